"""`stepscope train …` / `python -m stepscope.train …`: train a model, or evaluate one on held-out instances.

Only argparse here: the model stack is imported when a command runs, so `stepscope --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_train_commands(parser: argparse.ArgumentParser) -> None:
    """Add the `fit` and `evaluate` subcommands to `parser` (the `train` parser of the stepscope CLI)."""
    sub = parser.add_subparsers(dest="train_command", required=True)

    fit = sub.add_parser(
        "fit", help="train the VAE and/or the transformer, resumably; save a diffusers pipeline directory"
    )
    fit.add_argument("--config", choices=["full", "smoke"], default="full")
    fit.add_argument("--out", required=True, help="output directory (vae/, pipeline/, checkpoints, records)")
    fit.add_argument(
        "--stage",
        choices=["all", "vae", "transformer"],
        default="all",
        help="vae: the VAE stage; transformer: the transformer on --vae; all: both in this process",
    )
    fit.add_argument(
        "--resume", help="a checkpoint directory of this stage (vae-checkpoint/ or transformer-checkpoint/)"
    )
    fit.add_argument("--vae", help="the VAE directory the transformer stage trains on (a VAE stage's vae/)")
    fit.add_argument("--init-vae", help="vae stage: start a new schedule from this saved VAE's weights (a fine-tune)")
    fit.add_argument("--stop-at-step", type=int, help="stop this process before this step, with a checkpoint")
    fit.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 …")
    fit.add_argument("--seed", type=int, help="override the config's seed")
    fit.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PART.FIELD=JSON",
        help="override a config field, e.g. transformer.steps=5000 or vae.seconds=null (repeatable)",
    )
    fit.add_argument(
        "--max-seconds",
        type=float,
        help="end this process within this many seconds, with a checkpoint and everything saved (resume later)",
    )
    fit.set_defaults(func=cmd_fit)

    ceiling = sub.add_parser("vae-ceiling", help="the scorers' pass rate on a VAE's reconstructions of ground truth")
    ceiling.add_argument("--vae", required=True, help="a VAE directory (a VAE stage's vae/) or a pipeline's vae/")
    ceiling.add_argument("--config", choices=["full", "smoke"], default="full", help="families, canvas, difficulties")
    ceiling.add_argument("--split", choices=["validation", "held-out"], default="validation")
    ceiling.add_argument("--n", type=int, default=500, help="instances per family")
    ceiling.add_argument("--device", default="cpu")
    ceiling.add_argument("--batch", type=int, default=100)
    ceiling.add_argument("--workers", type=int, help="processes scoring videos (default: CPU count − 1; 0: none)")
    ceiling.add_argument("--json-out", help="also write the JSON record here")
    ceiling.set_defaults(func=cmd_vae_ceiling)

    export = sub.add_parser("export", help="a pipeline directory from a transformer checkpoint and its VAE")
    export.add_argument("--checkpoint", required=True, help="a transformer-checkpoint/ directory")
    export.add_argument("--vae", required=True, help="the VAE directory it was trained on")
    export.add_argument("--out", required=True, help="the pipeline directory to write")
    export.set_defaults(func=cmd_export)

    export_vae = sub.add_parser("export-vae", help="a VAE directory from a VAE checkpoint and its vae/config.json")
    export_vae.add_argument("--checkpoint", required=True, help="a vae-checkpoint/ directory")
    export_vae.add_argument("--config", required=True, help="the directory of the vae/config.json written with it")
    export_vae.add_argument("--out", required=True, help="the VAE directory to write")
    export_vae.set_defaults(func=cmd_export_vae)

    ev = sub.add_parser("evaluate", help="success rate per family on held-out instances, with 95%% Wilson intervals")
    ev.add_argument("--model", required=True, help="a saved pipeline directory or a preset name")
    ev.add_argument("--config", choices=["full", "smoke"], default="full", help="families, canvas and difficulties")
    ev.add_argument("--n", type=int, default=500, help="instances per family")
    ev.add_argument(
        "--split",
        choices=["held-out", "validation", "training"],
        default="held-out",
        help="which instances (training: the pool's own, needs --train-keys)",
    )
    ev.add_argument("--steps", type=int, default=20)
    ev.add_argument("--guidance", type=float, default=5.0)
    ev.add_argument("--device", default="cpu")
    ev.add_argument(
        "--dtype", choices=["float32", "bfloat16"], default="float32", help="float32: as mini-reasoner loads"
    )
    ev.add_argument("--batch", type=int, default=100)
    ev.add_argument("--sampler", choices=["batched", "pipeline"], default="batched")
    ev.add_argument("--train-keys", help="the run's train_keys.txt: count held-out instances equal to training ones")
    ev.add_argument("--vae-ceiling", action="store_true", help="also score the VAE's reconstructions of the truth")
    ev.add_argument(
        "--chain-of-steps",
        type=int,
        default=0,
        metavar="N",
        help="also measure explore-then-commit on N held-out mazes",
    )
    ev.add_argument("--workers", type=int, help="processes scoring videos (default: CPU count − 1; 0: none)")
    ev.add_argument("--json-out", help="also write the JSON record here")
    ev.set_defaults(func=cmd_evaluate)


def _print(line: str) -> None:
    print(line, flush=True)


def _write_json(path: str | None, record: dict) -> int:
    """Write a command's JSON record where `--json-out` says (if it does); the command's exit status."""
    if path:
        Path(path).write_text(json.dumps(record, indent=1))
    return 0


def config_with_overrides(name: str, seed: int | None, overrides: list[str]):
    """The named config with `--seed` and `--set part.field=json` applied; a bad override names itself."""
    from stepscope.train.config import CONFIGS

    cfg = CONFIGS[name]
    changes: dict = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: expected PART.FIELD=JSON")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        part, dot, fieldname = key.partition(".")
        if dot:
            changes.setdefault(part, {})[fieldname] = value
        else:
            changes[key] = tuple(value) if isinstance(value, list) else value
    if seed is not None:
        changes["seed"] = seed
    try:
        return cfg.replace(**changes)
    except TypeError as exc:
        raise SystemExit(f"--set: {exc}") from exc


def cmd_fit(args) -> int:
    from stepscope.train.run import train

    cfg = config_with_overrides(args.config, args.seed, args.set)
    try:
        train(
            cfg,
            Path(args.out),
            device=args.device,
            log=_print,
            max_seconds=args.max_seconds,
            stage=args.stage,
            resume=None if args.resume is None else Path(args.resume),
            vae_dir=None if args.vae is None else Path(args.vae),
            stop_at_step=args.stop_at_step,
            init_vae=None if args.init_vae is None else Path(args.init_vae),
        )
    except ValueError as exc:  # a refused resume or stage: say why, no traceback
        raise SystemExit(f"fit: {exc}") from exc
    return 0


def cmd_vae_ceiling(args) -> int:
    from stepscope.train.config import CONFIGS
    from stepscope.train.data import worker_count
    from stepscope.train.evaluate import vae_ceiling
    from stepscope.train.run import load_vae

    record = vae_ceiling(
        load_vae(Path(args.vae), args.device),
        cfg=CONFIGS[args.config],
        per_family=args.n,
        split=args.split,
        batch=args.batch,
        workers=worker_count(args.workers),
        log=_print,
    )
    return _write_json(args.json_out, record)


def cmd_export(args) -> int:
    from stepscope.train.run import export_pipeline

    print(export_pipeline(Path(args.checkpoint), Path(args.vae), Path(args.out)))
    return 0


def cmd_evaluate(args) -> int:
    from stepscope.models import load_model
    from stepscope.train.config import CONFIGS
    from stepscope.train.data import worker_count
    from stepscope.train.evaluate import evaluate

    model = load_model(args.model, device=args.device, dtype=args.dtype)
    keys = None
    if args.train_keys:
        keys = set(Path(args.train_keys).read_text().split())
    record = evaluate(
        model,
        cfg=CONFIGS[args.config],
        per_family=args.n,
        steps=args.steps,
        guidance=args.guidance,
        batch=args.batch,
        sampler=args.sampler,
        train_keys=keys,
        vae_ceiling=args.vae_ceiling,
        chain_of_steps_mazes=args.chain_of_steps,
        split=args.split,
        workers=worker_count(args.workers),
        log=_print,
    )
    return _write_json(args.json_out, record)


def cmd_export_vae(args) -> int:
    from stepscope.train.run import export_vae

    print(export_vae(Path(args.checkpoint), Path(args.config), Path(args.out)))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stepscope.train", description=__doc__)
    add_train_commands(parser)
    args = parser.parse_args(argv)
    return args.func(args)
