"""Benchmark a model on the task suite: `python -m stepscope.tasks.bench --model M --tasks maze,... --n N`.

For each family, N instances (instance i: seed first_seed + i, difficulty 1 + i % 3 unless one is
given) each run as one experiment through the probe engine — the baseline and every variant of
`--variants FILE` (a JSON list of spec variants) — with the instance's first frame as the
conditioning image and its prompt. The final video of every trajectory is scored; each step's
x̂₀ preview (or full decode, `--curves decode`) gives the per-step candidate curves. Written to
OUT/bench.json (everything) and OUT/bench.md (the table); `--json` prints one summary line.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import datetime as dt
import json
import sys
from pathlib import Path

import numpy as np

from stepscope.tasks.core import Canvas, TaskError, TaskInstance, family_names, generate
from stepscope.tasks.curves import CandidateCurves, candidate_curves

CONFIDENCE = 0.95
RESAMPLES = 2000
CURVE_SOURCES = ("preview", "decode")


def bootstrap_interval(
    outcomes: list[float], confidence: float = CONFIDENCE, resamples: int = RESAMPLES, seed: int = 0
) -> list[float]:
    """Percentile bootstrap interval of the mean of `outcomes` (e.g. 0/1 successes)."""
    if not outcomes:
        raise ValueError("outcomes: need at least one value")
    values = np.asarray(outcomes, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    return [float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))]


def image_data_url(instance: TaskInstance) -> str:
    from stepscope.images import encode_png

    return "data:image/png;base64," + base64.b64encode(encode_png(instance.first_frame_image())).decode("ascii")


def instance_spec(instance: TaskInstance, model_name: str, model_task: str, steps: int, variants: list, curves: str):
    """The experiment spec (JSON) that runs one instance: its prompt, its first frame (image-to-video models), its
    canvas size and frame count, and the instance as the spec's `task` (the run scores itself); no layer norms (the
    bench needs only previews and the final video)."""
    spec = {
        "model": model_name,
        "prompt": instance.prompt,
        "seed": instance.seed,
        "steps": steps,
        "height": instance.canvas.size,
        "width": instance.canvas.size,
        "frames": instance.canvas.frames,
        "probes": {"layers": "none", "x0_arrays": False, "decode_every": 1 if curves == "decode" else None},
        "variants": variants,
        "task": {"family": instance.family, "difficulty": instance.difficulty, "seed": instance.seed},
    }
    if model_task == "i2v":
        spec["image"] = image_data_url(instance)
    return spec


def step_videos(trajectory, curves: str) -> tuple[list[int], list[np.ndarray]]:
    """Each captured step's video estimate of a stored trajectory: member 0's preview or full decode."""
    if curves == "decode":
        steps = [d["step"] for d in trajectory.entry["decodes"] if isinstance(d["step"], int)]
        steps.sort()
        return steps, [trajectory.decoded(s) for s in steps]
    return list(trajectory.steps), [member[0] for member in trajectory.previews]


def score_run(instance: TaskInstance, run_path: str, curves: str = "preview", *, stored: bool = False) -> dict:
    """Every trajectory's verdict and candidate curves in a stored run of `instance` (swap sources left out).

    By default the stored videos are scored now. With `stored`, what a run whose spec named the task kept
    (`task_score`, and `candidates` from previews) is read back instead; trajectories without them (older
    runs), and `curves="decode"` curves, are measured here."""
    from stepscope.run import load_run

    run = load_run(run_path)
    out = {}
    for name, trajectory in run.trajectories.items():
        if trajectory.kind == "swap_source":
            continue
        kept_score = trajectory.record.task_score if stored else None
        result = kept_score if kept_score is not None else instance.score(trajectory.video)
        curve: CandidateCurves
        if stored and curves == "preview" and trajectory.record.candidates is not None:
            kept = trajectory.record.candidates
            curve = CandidateCurves(**{f.name: getattr(kept, f.name) for f in dataclasses.fields(CandidateCurves)})
        else:
            steps, videos = step_videos(trajectory, curves)
            curve = candidate_curves(instance, videos, steps)
        out[name] = {
            "score": result.score,
            "passed": result.passed,
            "reason": result.reason,
            "curves": curve.to_json(),
            "explored_then_committed": curve.explored_then_committed(),
        }
    return out


def summarize(instances: list[dict], families: list[str], trajectory_names: list[str]) -> dict:
    """Success rate with its bootstrap interval, mean score and mean curves per family × trajectory."""
    success, interval, mean_score, curves = {}, {}, {}, {}
    for family in families:
        rows = [r for r in instances if r["family"] == family]
        success[family], interval[family], mean_score[family], curves[family] = {}, {}, {}, {}
        for name in trajectory_names:
            results = [r["trajectories"][name] for r in rows if name in r["trajectories"]]
            if not results:
                continue
            passed = [float(x["passed"]) for x in results]
            success[family][name] = float(np.mean(passed))
            interval[family][name] = bootstrap_interval(passed)
            mean_score[family][name] = float(np.mean([x["score"] for x in results]))
            lengths = {len(x["curves"]["live"]) for x in results}
            entry: dict = {
                "explored_then_committed": float(np.mean([x["explored_then_committed"] for x in results])),
            }
            if len(lengths) == 1:  # same steps in every run: average step by step
                live = np.asarray([x["curves"]["live"] for x in results], dtype=np.float64)
                wins = np.asarray(
                    [[w == x["curves"]["answer"] for w in x["curves"]["winner"]] for x in results], dtype=np.float64
                )
                entry.update(
                    steps=results[0]["curves"]["steps"],
                    mean_live=live.mean(axis=0).tolist(),
                    answer_wins=wins.mean(axis=0).tolist(),
                )
            curves[family][name] = entry
    return {"success_rate": success, "interval": interval, "mean_score": mean_score, "curves": curves}


def table(summary: dict, n: int) -> str:
    """The summary as a Markdown table."""
    lines = [
        f"| family | trajectory | success (n={n}) | 95% interval | mean score | explored then committed |",
        "|---|---|---|---|---|---|",
    ]
    for family, by_name in summary["success_rate"].items():
        for name, rate in by_name.items():
            lo, hi = summary["interval"][family][name]
            score = summary["mean_score"][family][name]
            etc = summary["curves"][family][name]["explored_then_committed"]
            lines.append(f"| {family} | {name} | {rate:.3f} | [{lo:.3f}, {hi:.3f}] | {score:.3f} | {etc:.3f} |")
    return "\n".join(lines)


def load_variants(path: str | None) -> list:
    """A JSON list of spec variants, or an object with a "variants" list."""
    if path is None:
        return []
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise TaskError("variants", f"cannot read {path} as JSON ({exc})") from None
    if isinstance(data, dict):
        data = data.get("variants")
    if not isinstance(data, list):
        raise TaskError("variants", "expected a JSON list of variants or an object with a 'variants' list")
    return data


def run_bench(
    model,
    families: list[str],
    n: int,
    out: str,
    *,
    variants: list | None = None,
    steps: int | None = None,
    canvas: Canvas | None = None,
    difficulty: int | None = None,
    first_seed: int = 0,
    curves: str = "preview",
    log=None,
) -> dict:
    """Run the benchmark on a loaded model (`stepscope.models.load_model`); returns what bench.json holds."""
    from stepscope.probe import run_experiment
    from stepscope.spec import check_against_model, parse_spec
    from stepscope.store import RunDir

    if curves not in CURVE_SOURCES:
        raise TaskError("curves", f"must be one of {CURVE_SOURCES}, got {curves!r}")
    if n < 1:
        raise TaskError("n", f"must be at least 1, got {n}")
    variants = variants or []
    canvas = canvas or Canvas()
    steps = steps or 20
    names = ["baseline", *[v.get("name") for v in variants if isinstance(v, dict)]]
    conditioned = model.info.task == "i2v"
    instances = []
    for family in families:
        for i in range(n):
            level = difficulty or 1 + i % 3
            instance = generate(family, level, first_seed + i, canvas=canvas)
            spec = parse_spec(instance_spec(instance, model.name, model.info.task, steps, variants, curves))
            check_against_model(spec, model.info)
            run_path = str(Path(out) / family / f"seed{instance.seed:06d}")
            run_experiment(model, spec, RunDir.at(run_path))
            scored = score_run(instance, run_path, curves, stored=True)  # the run scored itself
            instances.append(
                {
                    "family": family,
                    "seed": instance.seed,
                    "difficulty": level,
                    "run": run_path,
                    "instance": instance.to_json(),
                    "trajectories": scored,
                }
            )
            if log:
                verdicts = ", ".join(f"{k}={'pass' if v['passed'] else 'fail'}" for k, v in scored.items())
                log(f"{family} seed {instance.seed}: {verdicts}")
    report = {
        "model": model.name,
        "tasks": families,
        "n": n,
        "steps": steps,
        "canvas": {"size": canvas.size, "frames": canvas.frames},
        "conditioned_on_first_frame": conditioned,
        "curves_from": curves,
        "variants": variants,
        "trajectories": names,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        **summarize(instances, families, names),
        "instances": instances,
    }
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "bench.json").write_text(json.dumps(report, indent=1))
    (Path(out) / "bench.md").write_text(table(report, n) + "\n")
    return report


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The bench's options on `p` (also used by `stepscope bench`)."""
    p.add_argument("--model", default="tiny-i2v", help="preset, local diffusers directory or hub id")
    p.add_argument("--tasks", default=",".join(family_names()), help="comma-separated families")
    p.add_argument("--n", type=int, default=10, help="instances per family")
    p.add_argument("--variants", help="JSON file: a list of spec variants run beside the baseline")
    p.add_argument("--steps", type=int, help="denoising steps (default: the model preset's, else 20)")
    p.add_argument("--size", type=int, default=Canvas.size, help="canvas side in pixels (multiple of 16)")
    p.add_argument("--frames", type=int, default=Canvas.frames, help="video frames (4k+1)")
    p.add_argument("--difficulty", type=int, choices=(1, 2, 3), help="one difficulty (default: 1, 2, 3 in turn)")
    p.add_argument("--first-seed", type=int, default=0, help="instance i uses seed first_seed + i")
    p.add_argument("--curves", choices=CURVE_SOURCES, default="preview", help="per-step video estimates to measure")
    p.add_argument("--out", help="output directory (default runs/bench-<model>-<time>)")
    p.add_argument("--device", help="torch device (default: settings)")
    p.add_argument("--dtype", help="model dtype (default: the preset's)")
    p.add_argument("--json", action="store_true", help="print one JSON summary line")
    return p


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m stepscope.tasks.bench", description=__doc__.splitlines()[0])
    return run_from_args(add_arguments(parser).parse_args(argv))


def run_from_args(args: argparse.Namespace) -> int:
    """Run the bench from parsed options (see add_arguments); returns the exit status."""
    try:
        families = [f.strip() for f in args.tasks.split(",") if f.strip()]
        known = family_names()
        for family in families:
            if family not in known:
                raise TaskError("tasks", f"unknown task family {family!r}; known: {', '.join(known)}")
        if args.n < 1:
            raise TaskError("n", f"must be at least 1, got {args.n}")
        canvas = Canvas(size=args.size, frames=args.frames)
        variants = load_variants(args.variants)
    except TaskError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    from stepscope.config import get_settings
    from stepscope.models import ModelError, load_model
    from stepscope.models.presets import PRESETS
    from stepscope.spec import SpecError

    preset = PRESETS.get(args.model)
    steps = args.steps or (preset.defaults.get("steps") if preset else None) or 20
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    out = args.out or f"runs/bench-{args.model.replace('/', '_')}-{stamp}"
    try:
        model = load_model(args.model, device=args.device or get_settings().device, dtype=args.dtype)
        report = run_bench(
            model,
            families,
            args.n,
            out,
            variants=variants,
            steps=steps,
            canvas=canvas,
            difficulty=args.difficulty,
            first_seed=args.first_seed,
            curves=args.curves,
            log=None if args.json else lambda line: print(line, file=sys.stderr),
        )
    except (ModelError, SpecError, TaskError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        keys = ("model", "n", "steps", "success_rate", "interval", "mean_score", "conditioned_on_first_frame")
        print(json.dumps({**{k: report[k] for k in keys}, "out": out}))
    else:
        print(table(report, args.n))
        print(f"\nwritten to {out}/bench.json and {out}/bench.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
