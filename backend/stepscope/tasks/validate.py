"""Validate the scorers on many instances: `python -m stepscope.tasks.validate --n 1000 [--json]`.

For each family: the share of ground-truth videos that pass (and of JPEG-compressed and blurred
ones), the share of corrupted videos that fail, and the share of ground truths whose candidate
measure has exactly one live candidate, the right one. Instance i has difficulty 1 + i % 3, seed i.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from stepscope.tasks import corrupt
from stepscope.tasks.core import family_names, generate


def validate_family(family: str, n: int, corruptions: bool = True) -> dict:
    """Rates over instances 0..n−1 of one family."""
    counts: dict[str, int] = {"ground_truth": 0, "candidates": 0}
    started = time.perf_counter()
    for i in range(n):
        instance = generate(family, difficulty=1 + i % 3, seed=i)
        truth = instance.ground_truth()
        counts["ground_truth"] += instance.score(truth).passed
        measure = instance.measure_candidates(truth)
        counts["candidates"] += measure.live == 1 and measure.winner == instance.answer
        if not corruptions:
            continue
        rng = np.random.default_rng(i)
        for name, make in corrupt.MUST_PASS.items():
            counts[f"{name}_passes"] = (
                counts.get(f"{name}_passes", 0) + instance.score(make(instance, truth, rng)).passed
            )
        for name, make in corrupt.MUST_FAIL.items():
            fails = not instance.score(make(instance, truth, rng)).passed
            counts[f"{name}_fails"] = counts.get(f"{name}_fails", 0) + fails
    rates = {key: value / n for key, value in counts.items()}
    return {"family": family, "n": n, "seconds": round(time.perf_counter() - started, 2), **rates}


ROBUSTNESS = {
    **{f"noise{std}": lambda video, rng, std=std: corrupt.added_noise(video, rng, std) for std in (8, 16, 32, 64)},
    **{f"blur{r}": lambda video, rng, r=r: corrupt.blurred(video, r) for r in (1.0, 1.5, 2.0)},
    **{f"jpeg{q}": lambda video, rng, q=q: corrupt.jpeg(video, q) for q in (50, 30, 15)},
}


def robustness(family: str, n: int) -> dict:
    """Share of ground truths that still pass under stronger degradations than the validation's (for reading a
    trained model's videos: where the scorer's tolerance ends)."""
    passes = dict.fromkeys(ROBUSTNESS, 0)
    for i in range(n):
        instance = generate(family, difficulty=1 + i % 3, seed=i)
        truth = instance.ground_truth()
        rng = np.random.default_rng(i)
        for name, degrade in ROBUSTNESS.items():
            passes[name] += instance.score(degrade(truth, rng)).passed
    return {"family": family, "n": n, **{f"{k}_passes": v / n for k, v in passes.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stepscope.tasks.validate", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="instances per family")
    parser.add_argument("--families", default=",".join(family_names()), help="comma-separated families")
    parser.add_argument("--no-corruptions", action="store_true", help="ground truth and candidates only")
    parser.add_argument("--robustness", action="store_true", help="pass rates under stronger noise, blur and JPEG")
    parser.add_argument("--json", action="store_true", help="one JSON line per family")
    args = parser.parse_args(argv)
    for family in args.families.split(","):
        if args.robustness:
            result = robustness(family.strip(), args.n)
        else:
            result = validate_family(family.strip(), args.n, corruptions=not args.no_corruptions)
        if args.json:
            print(json.dumps(result), flush=True)
        else:
            rates = "  ".join(f"{k}={v:.3f}" for k, v in result.items() if isinstance(v, float) and k != "seconds")
            took = f"  ({result['seconds']} s)" if "seconds" in result else ""
            print(f"{result['family']:<11} n={result['n']}  {rates}{took}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
