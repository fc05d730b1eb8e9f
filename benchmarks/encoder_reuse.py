"""Time `stepscope reproduce --reduced` or a bench on this CPU with and without the encoder cache, interleaved.

    python benchmarks/encoder_reuse.py --workload reproduce --repeats 3 --out results.jsonl
    python benchmarks/encoder_reuse.py --workload bench --tasks maze --n 20 --repeats 3 --out results.jsonl
    python benchmarks/encoder_reuse.py --workload bench --tasks maze --n 20 --repeats 3 \
        --variants '[{"name": "noise10", "interventions": [{"kind": "noise_at_step", "steps": [10], "strength": 1}]}]'

Both modes run the same workload with the same loaded model in one process, alternating (uncached, cached, cached,
uncached, ...), so load beside the benchmark falls on both. `uncached` passes an `EncoderCache` of capacity 0 (every
call encodes, as before issue 34); `cached` passes none, so the workload makes its own (its default). Each run's
real encoder work is counted beside the cache: a pre-hook on the text encoder's transformer stack and on the VAE's
`quant_conv` (once per real encode). One JSON line per run (wall seconds, the process's CPU seconds, encoder forwards,
load average), then per mode the medians and the ratios cached / uncached; each pair of runs is checked to store the
same final latents. On a shared machine the CPU seconds move less with the load beside the benchmark than wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from jsonl import emit_line  # noqa: E402
from stepscope.bench import run_bench  # noqa: E402
from stepscope.models import load_model  # noqa: E402
from stepscope.preview import linear_preview_for  # noqa: E402
from stepscope.probe import EncoderCache  # noqa: E402
from stepscope.probe.encoder_cache import DEFAULT_CAPACITY  # noqa: E402
from stepscope.reproduce import make_config  # noqa: E402
from stepscope.reproduce.command import run_reproduce  # noqa: E402
from stepscope.run import load_run  # noqa: E402
from stepscope.tasks import Canvas  # noqa: E402

MODES = ("uncached", "cached")


class EncoderWork:
    """Real forwards of the text encoder and real VAE encodes while installed."""

    def __init__(self, pipe):
        self.text_encoder = 0
        self.vae_encode = 0

        def count(field: str):
            def hook(*_):
                setattr(self, field, getattr(self, field) + 1)

            return hook

        self.handles = [
            pipe.text_encoder.encoder.register_forward_pre_hook(count("text_encoder")),
            pipe.vae.quant_conv.register_forward_pre_hook(count("vae_encode")),
        ]

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def run_dirs(out: Path, workload: str) -> dict[str, Path]:
    """Every run directory a workload wrote, by its path relative to `out`."""
    root = out / "runs" if workload == "reproduce" else out
    return {str(p.parent.relative_to(out)): p.parent for p in sorted(root.rglob("manifest.json"))}


def max_final_difference(a: Path, b: Path, workload: str) -> float:
    """The largest |difference| between the final latents of the same trajectory in two outputs of one workload."""
    runs_a, runs_b = run_dirs(a, workload), run_dirs(b, workload)
    assert runs_a.keys() == runs_b.keys() and runs_a, (sorted(runs_a), sorted(runs_b))
    worst = 0.0
    for rel in runs_a:
        run_a, run_b = load_run(str(runs_a[rel])), load_run(str(runs_b[rel]))
        assert run_a.manifest["trajectories"].keys() == run_b.manifest["trajectories"].keys(), rel
        for name in run_a.manifest["trajectories"]:
            diff = np.abs(run_a[name].final_latents - run_b[name].final_latents).max()
            worst = max(worst, float(diff))
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=("reproduce", "bench"), required=True)
    parser.add_argument("--model", default="tiny-i2v")
    parser.add_argument("--tasks", default="maze,pattern,trajectory", help="families (reproduce: each gets n=1)")
    parser.add_argument("--n", type=int, default=20, help="bench: instances per family")
    parser.add_argument("--variants", default="[]", help="bench: a JSON list of spec variants beside the baseline")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--frames", type=int, default=Canvas.frames)
    parser.add_argument("--size", type=int, default=Canvas.size)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each mode")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: a busy core does not stall both)")
    parser.add_argument("--scratch", help="directory for the runs (default: a temporary one)")
    parser.add_argument("--out", help="append the JSON lines here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    families = [f for f in args.tasks.split(",") if f]
    variants = json.loads(args.variants)
    out = open(args.out, "a") if args.out else None
    with tempfile.TemporaryDirectory(dir=args.scratch) as tmp:
        os.environ["STEPSCOPE_CACHE_DIR"] = str(Path(tmp) / "preview-cache")
        model = load_model(args.model, device="cpu")
        linear_preview_for(model.pipe.vae, os.environ["STEPSCOPE_CACHE_DIR"])  # fitted once, before any timing
        canvas = Canvas(size=args.size, frames=args.frames)

        def workload(dest: Path, cache: EncoderCache | None) -> None:
            if args.workload == "reproduce":
                cfg = make_config(
                    families, 1, args.steps, model.info.num_layers, size=canvas.size, frames=canvas.frames, reduced=True
                )
                run_reproduce(model, cfg, dest, encoder_cache=cache)
            else:
                run_bench(
                    model,
                    families,
                    args.n,
                    str(dest),
                    variants=variants,
                    steps=args.steps,
                    canvas=canvas,
                    encoder_cache=cache,
                )

        seconds: dict[str, list[float]] = {mode: [] for mode in MODES}
        cpu_seconds: dict[str, list[float]] = {mode: [] for mode in MODES}
        differences = []
        for repeat in range(args.repeats):
            order = MODES if repeat % 2 == 0 else MODES[::-1]
            outputs = {}
            for mode in order:
                dest = Path(tmp) / f"{mode}-{repeat}"
                cache = EncoderCache(model.pipe, capacity=0) if mode == "uncached" else None
                work = EncoderWork(model.pipe)
                load_before = os.getloadavg()[0]
                started, cpu_started = time.perf_counter(), time.process_time()
                try:
                    workload(dest, cache)
                finally:
                    work.close()
                elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
                seconds[mode].append(elapsed)
                cpu_seconds[mode].append(cpu)
                outputs[mode] = dest
                line = {
                    "benchmark": "encoder_reuse",
                    "workload": args.workload,
                    "mode": mode,
                    "repeat": repeat,
                    "seconds": round(elapsed, 3),
                    "cpu_seconds": round(cpu, 3),
                    "text_encoder_forwards": work.text_encoder,
                    "vae_encodes": work.vae_encode,
                    "load_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                }
                emit_line(line, out)
            differences.append(max_final_difference(outputs["uncached"], outputs["cached"], args.workload))
        medians = {mode: statistics.median(seconds[mode]) for mode in MODES}
        cpu_medians = {mode: statistics.median(cpu_seconds[mode]) for mode in MODES}
        summary = {
            "benchmark": "encoder_reuse",
            "workload": args.workload,
            "model": args.model,
            "families": families,
            "n": 1 if args.workload == "reproduce" else args.n,
            "variants": [] if args.workload == "reproduce" else variants,
            "steps": args.steps,
            "frames": canvas.frames,
            "size": canvas.size,
            "threads": torch.get_num_threads(),
            "repeats": args.repeats,
            "cache_capacity": DEFAULT_CAPACITY,
            "median_s": {mode: round(v, 3) for mode, v in medians.items()},
            "ratio_cached_over_uncached": round(medians["cached"] / medians["uncached"], 3),
            "median_cpu_s": {mode: round(v, 3) for mode, v in cpu_medians.items()},
            "cpu_ratio_cached_over_uncached": round(cpu_medians["cached"] / cpu_medians["uncached"], 3),
            "max_final_latent_difference": max(differences),
        }
        emit_line(summary, out)
    if out is not None:
        out.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
