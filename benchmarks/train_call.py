"""One device call of training: several `stepscope.train fit` processes side by side on one GPU, each ending in
time with a checkpoint, then each scored, then what must come back packed into at most 8 files of ≤ 15 MiB.

A lent GPU runs one command of at most 10 minutes and returns 8 files of 16 MiB; the models trained here are
small, so one process leaves most of an H100 idle (kernel launches bound a step), and side-by-side processes
measure several configurations in the time of one. Every variant is `fit` with its own `--set` overrides;
VAE variants are then scored with `vae-ceiling` on validation instances (never held-out ones: model selection),
transformer variants with `evaluate` on validation and training instances. The best variant by that score (or
the only one) is packed whole (its output directory as a split tar); the others' records and logs come back.
When the variant to pack is known before scoring (one variant, or `--pack NAME`), it is packed as soon as the
fits end, and scoring stops at `--deadline` seconds after the start (unfinished scorers are killed and named in
the summary), so a slow scorer cannot cost the call its checkpoint.

    python benchmarks/train_call.py --stage vae --seconds 390 --out $OUT \\
        --variant a: --variant b:vae.base_dim=20 --variant c:vae.image_batch=0
    python benchmarks/train_call.py --stage transformer --vae weights/mini-reasoner/vae --seconds 420 --out $OUT \\
        --variant a: --resume a=checkpoints/transformer-checkpoint
    python benchmarks/train_call.py --stage vae --seconds 515 --held-out-n 500 --out $OUT \\
        --variant f:vae.seconds=440 --init f=weights/mini-reasoner/vae

The variant spec is NAME:OVERRIDE,OVERRIDE,... (overrides as `fit --set`); `--resume NAME=DIR` resumes that
variant from a checkpoint directory; `--init NAME=DIR` starts that VAE variant from a saved VAE's weights.
Nothing here decides what is trained: the overrides are the command's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

PART_BYTES = 15 * 1024 * 1024
KILL_MARGIN = 60.0  # seconds past --max-seconds after which a fit is killed
WORK = Path("/tmp/train-call")


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, _, overrides = text.partition(":")
    if not name.isidentifier():
        raise SystemExit(f"--variant {text!r}: expected NAME:OVERRIDE,... with a plain NAME")
    return name, [o for o in overrides.split(",") if o]


def fit_command(args, name: str, overrides: list[str], resume: dict[str, str], init: dict[str, str]) -> list[str]:
    cmd = [sys.executable, "-m", "stepscope.train", "fit", "--config", args.config, "--stage", args.stage]
    cmd += ["--device", args.device, "--out", str(WORK / name), "--max-seconds", str(args.seconds)]
    if args.stage == "transformer":
        cmd += ["--vae", args.vae]
    if name in resume:
        cmd += ["--resume", resume[name]]
    if name in init:
        cmd += ["--init-vae", init[name]]
    for override in overrides:
        cmd += ["--set", override]
    return cmd


def score_commands(args, name: str) -> list[tuple[str, list[str]]]:
    base = [sys.executable, "-m", "stepscope.train"]
    out = WORK / name
    if args.stage == "vae":
        held_out = []
        if args.held_out_n:  # the gate, reported, never used to choose (score_of reads validation only)
            held_out = [
                (
                    "gate",
                    base
                    + ["vae-ceiling", "--vae", str(out / "vae"), "--split", "held-out", "--n", str(args.held_out_n)]
                    + ["--config", args.config, "--device", args.device, "--workers", str(args.score_workers)]
                    + ["--json-out", str(out / "gate.json")],
                )
            ]
        return held_out + [
            (
                "ceiling",
                base
                + ["vae-ceiling", "--vae", str(out / "vae"), "--split", "validation", "--n", str(args.n)]
                + ["--config", args.config]
                + [
                    "--device",
                    args.device,
                    "--workers",
                    str(args.score_workers),
                    "--json-out",
                    str(out / "ceiling.json"),
                ],
            )
        ]
    commands = []
    for split in ("validation", "training"):
        for guidance in args.guidance:
            tag = f"eval-{split}-g{guidance:g}"
            cmd = base + ["evaluate", "--model", str(out / "pipeline"), "--split", split, "--n", str(args.n)]
            cmd += ["--config", args.config]
            cmd += ["--guidance", str(guidance), "--device", args.device, "--workers", str(args.score_workers)]
            cmd += ["--json-out", str(out / f"{tag}.json"), "--train-keys", str(out / "train_keys.txt")]
            commands.append((tag, cmd))
    return commands


def score_of(args, name: str) -> float:
    """Mean over families of the validation pass rate (VAE: reconstructions; transformer: success at the first
    guidance); −1 when the variant left no score."""
    out = WORK / name
    path = out / ("ceiling.json" if args.stage == "vae" else f"eval-validation-g{args.guidance[0]:g}.json")
    if not path.is_file():
        return -1.0
    record = json.loads(path.read_text())
    key = "pass_rate" if args.stage == "vae" else "success_rate"
    rates = [f[key] for f in record["families"]]
    return sum(rates) / len(rates)


def pack(out: Path, name: str, directory: Path, members: list[str]) -> list[str]:
    """`members` of `directory` as one tar split into parts of ≤ 15 MiB named `<name>.tar.aa`, `.ab` …"""
    tar_path = WORK / f"{name}.tar"
    with tarfile.open(tar_path, "w") as tar:
        for member in members:
            if (directory / member).exists():
                tar.add(directory / member, arcname=member)
    data = tar_path.read_bytes()
    parts = []
    for k, start in enumerate(range(0, len(data), PART_BYTES)):
        suffix = chr(ord("a") + k // 26) + chr(ord("a") + k % 26)
        part = out / f"{name}.tar.{suffix}"
        part.write_bytes(data[start : start + PART_BYTES])
        parts.append(part.name)
    return parts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", choices=["vae", "transformer"], required=True)
    parser.add_argument("--config", default="full")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--vae", help="the VAE directory (transformer stage)")
    parser.add_argument("--variant", action="append", required=True, help="NAME:OVERRIDE,OVERRIDE,...")
    parser.add_argument("--resume", action="append", default=[], help="NAME=CHECKPOINT_DIR")
    parser.add_argument("--init", action="append", default=[], help="NAME=VAE_DIR: a VAE fine-tune from those weights")
    parser.add_argument("--seconds", type=float, required=True, help="each fit's --max-seconds")
    parser.add_argument("--n", type=int, default=300, help="validation (and training) instances a family to score")
    parser.add_argument("--guidance", type=float, action="append", help="transformer: guidance scales to score")
    parser.add_argument("--score-workers", type=int, default=4)
    parser.add_argument("--held-out-n", type=int, default=0, help="VAE: also score this many held-out a family")
    parser.add_argument("--out", required=True, help="$OUT: logs, records and the best variant's parts")
    parser.add_argument("--pack", default="best", help="'best', 'none', or a variant name to pack whole")
    parser.add_argument(
        "--deadline", type=float, default=0.0, help="seconds after the start past which scorers are killed (0: none)"
    )
    args = parser.parse_args()
    args.guidance = args.guidance or [5.0, 1.0]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    WORK.mkdir(parents=True, exist_ok=True)
    variants = dict(parse_variant(v) for v in args.variant)
    resume = dict(r.split("=", 1) for r in args.resume)
    init = dict(r.split("=", 1) for r in args.init)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    started = time.monotonic()
    procs = {}
    for name, overrides in variants.items():
        cmd = fit_command(args, name, overrides, resume, init)
        log = open(WORK / f"{name}-fit.log", "w")  # noqa: SIM115 - closed when the process ends
        log.write(" ".join(cmd) + "\n")
        log.flush()
        procs[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log)
    codes = {}
    for name, (proc, log) in procs.items():
        try:  # a fit ends by itself within --max-seconds; past a margin it is stuck, and the call must still pack
            codes[name] = proc.wait(timeout=max(1.0, started + args.seconds + KILL_MARGIN - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            codes[name] = proc.wait()
        log.close()
    fit_seconds = time.monotonic() - started
    members = ["vae/config.json", "vae-checkpoint", "vae.json"] if args.stage == "vae" else ["transformer-checkpoint"]
    members += ["training.json", "train_keys.txt"]
    # The weights travel once, in the checkpoint (`python -m stepscope.train export-vae` rebuilds vae/ here).
    early = next(iter(variants)) if args.pack == "best" and len(variants) == 1 else None
    early = args.pack if args.pack in variants else early
    packed = {early: pack(out, early, WORK / early, members)} if early is not None and codes[early] == 0 else {}
    scores = {}
    score_procs = []
    for name in variants:
        if codes[name] != 0:
            continue
        for tag, cmd in score_commands(args, name):
            log = open(WORK / f"{name}-{tag}.log", "w")  # noqa: SIM115
            log.write(" ".join(cmd) + "\n")
            log.flush()
            score_procs.append((tag, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log))
    killed = []
    for tag, proc, log in score_procs:
        try:
            proc.wait(timeout=None if not args.deadline else max(1.0, started + args.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            killed.append(tag)
        log.close()
    for name in variants:
        scores[name] = score_of(args, name)
    summary = {
        "stage": args.stage,
        "variants": variants,
        "resume": resume,
        "init": init,
        "fit_exit_codes": codes,
        "fit_seconds": round(fit_seconds, 1),
        "total_seconds": round(time.monotonic() - started, 1),
        "validation_score": scores,
        "scorers_killed_at_deadline": killed,
    }
    best = max(scores, key=scores.get) if scores else None
    summary["best"] = best
    chosen = best if args.pack == "best" else (None if args.pack == "none" else args.pack)
    small = [p for name in variants for p in (WORK / name).glob("*.json")] + list(WORK.glob("*.log"))
    with tarfile.open(out / "records.tar.gz", "w:gz") as tar:
        for path in small:
            tar.add(path, arcname=str(path.relative_to(WORK)))
    if chosen is not None and chosen not in packed:
        packed[chosen] = pack(out, chosen, WORK / chosen, members)
    summary["packed"] = packed
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
