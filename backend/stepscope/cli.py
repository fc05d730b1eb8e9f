"""`stepscope run | models | up | api | worker`: the command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from stepscope.run_format import MANIFEST
from stepscope.spec import SpecError, check_spec, parse_spec

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
        checked = check_spec(spec, model.info)  # parsed above to know the model; checked once, here
    except (ModelError, SpecError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = args.out or f"runs/{spec.model.replace('/', '_')}-seed{spec.seed}"
    run = RunDir.at(out)
    if run.exists(MANIFEST) and not args.overwrite:
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
        manifest = run_experiment(model, checked, run, emit=on_event, cache_dir=settings.cache_dir, allow_paths=True)
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


GRACEFUL_SHUTDOWN = 5.0  # seconds uvicorn waits for open responses after SIGTERM (SSE streams end at once)
STOP_TIMEOUT = 8.0  # seconds a child of `up` gets after SIGTERM before it is killed (all exit within 10 s)
log = logging.getLogger("stepscope.up")


def serve(app, host: str, port: int, on_exit: Callable[[], None] | None = None) -> None:
    """Run the API with uvicorn until SIGTERM/SIGINT; `on_exit` runs as soon as the signal arrives."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            super().handle_exit(sig, frame)
            if on_exit is not None:
                on_exit()

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=GRACEFUL_SHUTDOWN)
    Server(config).run()


def cmd_api(args) -> int:
    from stepscope.api import create_app

    settings = _settings_with(redis_url=args.redis_url, store=args.store)
    serve(create_app(settings), args.host or settings.host, args.port or settings.port)
    return 0


def stop_processes(procs: list, timeout: float = STOP_TIMEOUT, signalled: set[int] | None = None) -> None:
    """SIGTERM every process, then wait for each; one still running after `timeout` is killed.

    A pid in `signalled` got its SIGTERM already and is only waited for: a second SIGTERM would turn an
    RQ worker's warm shutdown (finish the step, record the job's end) into a cold one."""
    for proc in procs:
        if proc.poll() is None and (signalled is None or proc.pid not in signalled):
            proc.terminate()
            if signalled is not None:
                signalled.add(proc.pid)
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("pid %s did not stop within %.0f s of SIGTERM: killed", proc.pid, timeout)
            proc.kill()
            proc.wait()


class Child:
    """One process `up` keeps running: how to start it, and its restart history."""

    def __init__(self, name: str, start: Callable[[], subprocess.Popen]):
        self.name = name
        self._start = start
        self.process: subprocess.Popen | None = None
        self.restarts = 0
        self.started_at = 0.0
        self.last_exit: int | None = None
        self.restart_at: float | None = None  # when a restart is due, while one is pending
        self.backoff = Supervisor.FIRST_BACKOFF

    def start(self) -> None:
        self.process = self._start()
        self.started_at = time.monotonic()
        self.restart_at = None

    def status(self) -> dict:
        running = self.process is not None and self.process.poll() is None
        return {
            "state": "running" if running else ("restarting" if self.restart_at is not None else "stopped"),
            "pid": self.process.pid if running else None,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "up_seconds": round(time.monotonic() - self.started_at, 1) if running else None,
        }


class Supervisor:
    """Restarts what `up` started when it dies: after 1 s, doubling to 30 s while it keeps dying
    (the delay resets once a process has stayed up for a minute). Logs every exit and restart."""

    FIRST_BACKOFF = 1.0
    MAX_BACKOFF = 30.0
    STABLE_AFTER = 60.0
    POLL = 0.25

    def __init__(self) -> None:
        self.children: dict[str, Child] = {}
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._signalled: set[int] = set()  # pids already sent SIGTERM by stop()
        self._thread = threading.Thread(target=self._watch, name="stepscope-supervisor", daemon=True)

    def add(self, name: str, start: Callable[[], subprocess.Popen]) -> Child:
        child = self.children[name] = Child(name, start)
        child.start()
        return child

    def run(self) -> Supervisor:
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self.stopping.wait(self.POLL):
            for child in list(self.children.values()):
                with self._lock:
                    if self.stopping.is_set():
                        return
                    self._check(child)

    def _check(self, child: Child) -> None:
        now = time.monotonic()
        if child.restart_at is None:
            code = child.process.poll() if child.process is not None else None
            if code is None:
                if now - child.started_at > self.STABLE_AFTER:
                    child.backoff = self.FIRST_BACKOFF
                return
            child.last_exit = code
            child.restart_at = now + child.backoff
            log.warning(
                "%s (pid %s) exited with %s; restarting in %.0f s", child.name, child.process.pid, code, child.backoff
            )
            child.backoff = min(child.backoff * 2, self.MAX_BACKOFF)
        elif now >= child.restart_at:
            try:
                child.start()
            except Exception as exc:  # e.g. Redis's port still taken: try again after a longer pause
                child.restart_at = time.monotonic() + child.backoff
                log.warning("%s did not restart (%s); next try in %.0f s", child.name, exc, child.backoff)
                child.backoff = min(child.backoff * 2, self.MAX_BACKOFF)
                return
            child.restarts += 1
            log.warning("%s restarted (pid %s, restart %d)", child.name, child.process.pid, child.restarts)

    def status(self) -> dict:
        return {name: child.status() for name, child in self.children.items()}

    def stop(self, names: list[str]) -> None:
        """Stop restarting anything, then stop `names` together (SIGTERM once, kill after STOP_TIMEOUT);
        returns when they are gone. Safe to call again for the same names: it then only waits."""
        self.stopping.set()
        with self._lock:  # no restart is half done
            procs = [self.children[n].process for n in names if self.children[n].process is not None]
            signalled = self._signalled
        stop_processes(procs, signalled=signalled)


def cmd_up(args) -> int:
    """Redis (embedded unless STEPSCOPE_REDIS_URL is set), one worker per model, the API; `up`
    restarts a worker or the embedded Redis that dies, and stops them all on SIGTERM."""
    from stepscope.api import create_app
    from stepscope.embedded_redis import EmbeddedRedis, free_port

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    data_dir = Path(args.data_dir).resolve()
    settings = _settings_with(redis_url=args.redis_url, store=args.store)
    # Everything a deployment writes goes under its data directory unless told otherwise.
    defaults = {"store": str(data_dir / "runs"), "cache_dir": str(data_dir / "cache")}
    settings = settings.model_copy(
        update={
            k: v for k, v in defaults.items() if k not in settings.model_fields_set and getattr(args, k, None) is None
        }
    )
    supervisor = Supervisor()
    if not settings.redis_url:
        redis_port = free_port()

        def start_redis() -> subprocess.Popen:
            return EmbeddedRedis(data_dir / "redis", port=redis_port).start().process

        supervisor.add("redis", start_redis)
        settings = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{redis_port}/0"})
        print(f"embedded Redis on {settings.redis_url} (data in {data_dir / 'redis'})", flush=True)
    env = {
        **os.environ,
        "STEPSCOPE_REDIS_URL": settings.redis_url,
        "STEPSCOPE_STORE": settings.store,
        "STEPSCOPE_CACHE_DIR": settings.cache_dir,
    }
    workers = [f"worker:{model}" for model in args.model or ["tiny"]]
    for name in workers:
        model = name.split(":", 1)[1]
        supervisor.add(
            name,
            # A session of its own: Ctrl-C's SIGINT reaches only `up`, which then sends the one SIGTERM.
            lambda m=model: subprocess.Popen(
                [sys.executable, "-m", "stepscope.cli", "worker", "--model", m], env=env, start_new_session=True
            ),
        )
    supervisor.run()

    def on_exit() -> None:
        # Workers get SIGTERM now, at the same time as the API's streams are closed: all are down within 10 s.
        threading.Thread(target=supervisor.stop, args=(workers,), daemon=True).start()

    app = create_app(settings)
    app.state.supervisor = supervisor
    host, port = args.host or settings.host, args.port or settings.port
    print(f"stepscope is up: http://{host}:{port}/  (API docs: http://{host}:{port}/docs; Ctrl-C stops)", flush=True)
    print(f"runs in {settings.store}", flush=True)
    # uvicorn re-raises the signal it caught once it has shut down; ignore that one so the
    # `finally` below stops the workers and Redis instead of the process just dying.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    try:
        serve(app, host, port, on_exit=on_exit)
    finally:
        # Workers first (they record their jobs' ends in Redis), then Redis.
        supervisor.stop(workers)
        supervisor.stop(["redis"] if "redis" in supervisor.children else [])
        print("stopped", flush=True)
    return 0


def cmd_bench(args) -> int:
    from stepscope.bench import run_from_args

    return run_from_args(args)


def cmd_reproduce(args) -> int:
    from stepscope.reproduce.command import run_from_args

    return run_from_args(args)


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
    up.add_argument(
        "--data-dir",
        default="var",
        help="where everything is written: the embedded Redis's data, runs (unless --store or STEPSCOPE_STORE) "
        "and the preview-map cache (unless STEPSCOPE_CACHE_DIR)",
    )
    service_flags(up)
    up.set_defaults(func=cmd_up)

    from stepscope.bench import add_arguments as add_bench_arguments  # no torch until it runs

    bench = sub.add_parser("bench", help="success rates on the reasoning tasks (docs/tasks.md)")
    add_bench_arguments(bench).set_defaults(func=cmd_bench)

    from stepscope.reproduce.command import add_arguments as add_reproduce_arguments  # no torch until it runs

    reproduce = sub.add_parser(
        "reproduce", help="the paper's analyses on a model: findings.md, findings.json, runs (docs/reproduce.md)"
    )
    add_reproduce_arguments(reproduce).set_defaults(func=cmd_reproduce)

    from stepscope.train.cli import add_train_commands  # argparse only: no torch until it runs

    train = sub.add_parser("train", help="train the mini-reasoner model, or evaluate a model on held-out tasks")
    add_train_commands(train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
