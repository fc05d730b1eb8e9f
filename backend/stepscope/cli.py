"""`stepscope run | models | up | api | worker`: the command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from stepscope.spec import SpecError, check_against_model, parse_spec

SPEC_FLAGS = {
    "model": str,
    "prompt": str,
    "negative_prompt": str,
    "image": str,
    "seed": int,
    "steps": int,
    "guidance": float,
    "guidance_2": float,
    "height": int,
    "width": int,
    "frames": int,
}


def _spec_from_args(args) -> dict:
    data: dict = {}
    if args.spec:
        text = sys.stdin.read() if args.spec == "-" else Path(args.spec).read_text()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError("spec", f"{args.spec} is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise SpecError("spec", "the spec must be a JSON object")
    for key in SPEC_FLAGS:
        value = getattr(args, key)
        if value is not None:
            data[key] = value
    probes = dict(data.get("probes") or {})
    if args.every is not None:
        probes["every"] = args.every
    if args.layers is not None:
        probes["layers"] = args.layers if args.layers in ("all", "none") else [int(x) for x in args.layers.split(",")]
    if args.passes is not None:
        probes["passes"] = args.passes
    if args.decode_every is not None:
        probes["decode_every"] = args.decode_every
    if probes:
        data["probes"] = probes
    return data


def cmd_run(args) -> int:
    from tqdm import tqdm

    from stepscope.config import compile_on, get_settings, step_decode_dtype_for
    from stepscope.models import ModelError, load_model
    from stepscope.probe import Cancelled, run_experiment
    from stepscope.store import RunDir

    try:
        spec = parse_spec(_spec_from_args(args))
    except SpecError as exc:
        print(f"invalid spec: {exc}", file=sys.stderr)
        return 2
    settings = get_settings()
    try:
        device = args.device or settings.device
        compile_blocks = args.compile or (args.compile is None and compile_on(settings, device))
        model = load_model(
            spec.model,
            device=device,
            dtype=args.dtype,
            offload=args.offload,
            compile=compile_blocks,
            step_decode_dtype=step_decode_dtype_for(settings, device, args.offload),
        )
        check_against_model(spec, model.info)
    except (ModelError, SpecError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = args.out or f"runs/{spec.model.replace('/', '_')}-seed{spec.seed}"
    run = RunDir.at(out)
    if run.exists("manifest.json") and not args.overwrite:
        print(f"error: {out} already holds a run (use --overwrite)", file=sys.stderr)
        return 2
    bar = tqdm(total=1, unit="step", disable=args.quiet)

    def on_event(event: dict) -> None:
        progress = event.get("progress")
        if progress:
            bar.total = progress["total"]
            bar.n = progress["done"]
            bar.set_postfix_str(f"{event.get('trajectory', '')} {event['type']}")
            bar.refresh()

    try:
        manifest = run_experiment(model, spec, run, emit=on_event, cache_dir=settings.cache_dir, allow_paths=True)
    except Cancelled:
        bar.close()
        print("cancelled", file=sys.stderr)
        return 130
    bar.close()
    summary = {name: t["status"] for name, t in manifest["trajectories"].items()}
    print(json.dumps({"out": out, "status": manifest["status"], "trajectories": summary}))
    return 0


def cmd_models(args) -> int:
    from stepscope.models import PRESETS

    rows = [
        (p.name, p.source, p.info.task, len(p.info.experts), p.info.num_layers, p.description) for p in PRESETS.values()
    ]
    if args.json:
        print(
            json.dumps(
                [
                    dict(zip(("name", "source", "task", "experts", "layers", "description"), r, strict=True))
                    for r in rows
                ]
            )
        )
        return 0
    print(f"{'name':<18} {'task':<4} {'experts':>7} {'layers':>6}  source")
    for name, source, task, experts, layers, _ in rows:
        print(f"{name:<18} {task:<4} {experts:>7} {layers:>6}  {source}")
    return 0


def _settings_with(**overrides):
    from stepscope.config import get_settings

    settings = get_settings()
    return settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})


def cmd_worker(args) -> int:
    import logging

    from stepscope.worker import run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = _settings_with(redis_url=args.redis_url, store=args.store)
    run_worker(args.model, device=args.device, name=args.name, burst=args.burst, settings=settings)
    return 0


def cmd_api(args) -> int:
    import uvicorn

    from stepscope.api import create_app

    settings = _settings_with(redis_url=args.redis_url, store=args.store)
    uvicorn.run(
        create_app(settings), host=args.host or settings.host, port=args.port or settings.port, log_level="warning"
    )
    return 0


def stop_processes(procs: list, timeout: float = 30) -> None:
    """SIGTERM every process, then wait for each; one still running after `timeout` is killed."""
    import subprocess

    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()


def cmd_up(args) -> int:
    """Redis (embedded unless STEPSCOPE_REDIS_URL is set), one worker per model, the API."""
    import os
    import signal
    import subprocess

    import uvicorn

    from stepscope.api import create_app
    from stepscope.embedded_redis import EmbeddedRedis

    settings = _settings_with(redis_url=args.redis_url, store=args.store)
    embedded = None
    if not settings.redis_url:
        embedded = EmbeddedRedis(Path(args.data_dir) / "redis").start()
        settings = settings.model_copy(update={"redis_url": embedded.url})
        print(f"embedded Redis on {embedded.url} (data in {args.data_dir}/redis)", flush=True)
    env = {**os.environ, "STEPSCOPE_REDIS_URL": settings.redis_url, "STEPSCOPE_STORE": settings.store}
    workers = [
        subprocess.Popen([sys.executable, "-m", "stepscope.cli", "worker", "--model", model], env=env)
        for model in args.model or ["tiny"]
    ]

    # uvicorn re-raises the SIGTERM it caught once it has shut down; turn that into an exception
    # so the `finally` below stops the workers and Redis instead of the process just dying.
    def stop_on_sigterm(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop_on_sigterm)
    host, port = args.host or settings.host, args.port or settings.port
    print(f"stepscope is up: http://{host}:{port}/  (API docs: http://{host}:{port}/docs; Ctrl-C stops)", flush=True)
    try:
        uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")
    finally:
        stop_processes(workers)
        if embedded is not None:
            embedded.stop()
        print("stopped", flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stepscope", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run an experiment spec into a run directory")
    run.add_argument("spec", nargs="?", help="experiment spec JSON file ('-' for stdin); flags override it")
    for key, typ in SPEC_FLAGS.items():
        run.add_argument(f"--{key.replace('_', '-')}", dest=key, type=typ)
    run.add_argument("--every", type=int, help="capture every k-th step")
    run.add_argument("--layers", help="'all', 'none' or comma-separated layer indices")
    run.add_argument("--passes", choices=["cond", "uncond", "both"])
    run.add_argument("--decode-every", type=int, dest="decode_every")
    run.add_argument("--out", help="run directory (local path or fsspec URL)")
    run.add_argument("--overwrite", action="store_true")
    run.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: STEPSCOPE_DEVICE or cpu)")
    run.add_argument("--dtype", choices=["float32", "bfloat16", "float16"])
    run.add_argument("--offload", choices=["none", "model", "sequential"], default="none")
    run.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="torch.compile the transformer blocks (default: on for CUDA, see STEPSCOPE_COMPILE)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(func=cmd_run)

    models = sub.add_parser("models", help="list model presets")
    models.add_argument("--json", action="store_true")
    models.set_defaults(func=cmd_models)

    def service_flags(p):
        p.add_argument("--redis-url", dest="redis_url", help="default: STEPSCOPE_REDIS_URL")
        p.add_argument("--store", help="run directories: path or fsspec URL (default: STEPSCOPE_STORE or ./runs)")

    worker = sub.add_parser("worker", help="serve one model's queue with the model resident")
    worker.add_argument("--model", default="tiny")
    worker.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: STEPSCOPE_DEVICE or cpu)")
    worker.add_argument("--name", help="worker name (default: host.pid.random)")
    worker.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    service_flags(worker)
    worker.set_defaults(func=cmd_worker)

    api = sub.add_parser("api", help="serve the REST API and the explorer")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    service_flags(api)
    api.set_defaults(func=cmd_api)

    up = sub.add_parser("up", help="start Redis (embedded), a worker and the API on this machine")
    up.add_argument("--host")
    up.add_argument("--port", type=int)
    up.add_argument("--model", action="append", help="model to serve (repeatable; default tiny)")
    up.add_argument("--data-dir", default="var", help="where the embedded Redis keeps its data")
    service_flags(up)
    up.set_defaults(func=cmd_up)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
