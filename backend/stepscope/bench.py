"""Benchmark a model on the task suite: `python -m stepscope.bench --model M --tasks maze,... --n N`.

For each family, N instances (instance i: seed first_seed + i, difficulty 1 + i % 3 unless one is
given) each run as one experiment through the probe engine — the baseline and every variant of
`--variants FILE` (a JSON list of spec variants) — with the instance's first frame as the
conditioning image and its prompt. The final video of every trajectory is scored; each step's
x̂₀ preview (or full decode, `--curves decode`) gives the per-step candidate curves. Written to
OUT/bench.json (everything), OUT/bench-summary.json (all but the per-instance list) and OUT/bench.md
(the table); `--json` prints one summary line.

The same run as an API job (`POST /api/bench`): a `BenchRequest` is validated by the API
(`parse_bench_request`, `check_request`) and run by the model's resident worker through `run_request`,
the function the command line calls too.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from stepscope import events
from stepscope.images import ImageError, decode_data_url, is_data_url
from stepscope.run_format import BENCH_RESULT, BENCH_SUMMARY, BENCH_TABLE, bench_instance_dir
from stepscope.spec import MAX_STEPS, MAX_TASK_SEED, MAX_VARIANTS, SpecError, Variant, check_spec, spec_error_from
from stepscope.stats import mean_interval
from stepscope.store import Revoked, RunDir
from stepscope.tasks.calibration import video_shares
from stepscope.tasks.core import (
    DIFFICULTIES,
    MAX_FRAMES,
    MAX_SIZE,
    MIN_FRAMES,
    MIN_SIZE,
    Canvas,
    TaskError,
    TaskInstance,
    family_names,
    generate,
)
from stepscope.tasks.curves import CandidateCurves, answer_win_shares, candidate_curves

if TYPE_CHECKING:  # the API imports this module for BenchRequest: no torch there
    from stepscope.probe import EncoderCache

CURVE_SOURCES = ("preview", "decode")
MAX_N = 500  # instances per family in one bench
MAX_RUNS = 2000  # trajectory runs in one bench: instances × (baseline + variants)
DEFAULT_STEPS = 20  # for models without a preset's default

_logger = logging.getLogger("stepscope.bench")


def image_data_url(instance: TaskInstance) -> str:
    """The instance's first frame as a data URL (a spec's `image`)."""
    from stepscope.images import png_data_url

    return png_data_url(instance.first_frame_image())


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


def score_run(instance: TaskInstance, run_path: str | RunDir, curves: str = "preview", *, stored: bool = False) -> dict:
    """Every trajectory's verdict and candidate curves in a stored run of `instance` (swap sources left out);
    `run_path` is a path or URL, or an open RunDir.

    By default the stored videos are scored now. With `stored`, what a run whose spec named the task kept
    (`task_score`, and `candidates` from previews) is read back instead; trajectories without them (older
    runs), and `curves="decode"` curves, are measured here."""
    from stepscope.run import Run, load_run

    run = Run(run_path) if isinstance(run_path, RunDir) else load_run(run_path)
    out = {}
    for name, trajectory in run.trajectories.items():
        if trajectory.kind == "swap_source":
            continue
        kept_score = trajectory.record.task_score if stored else None
        result = kept_score if kept_score is not None else instance.score(trajectory.video)
        curve: CandidateCurves
        if stored and curves == "preview" and trajectory.record.candidates is not None:
            curve = CandidateCurves.from_record(trajectory.record.candidates)
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


def calibrate_bench(bench_dir: str) -> dict:
    """The answer-win shares of a stored bench's baseline trajectories, re-measured now: the final videos, and every
    step's preview pooled, per family (`benchmarks/candidate_calibration.py --bench DIR`; docs/tasks.md,
    *Calibration*). The bench reads the runs, one at a time; the task suite measures their videos."""
    from stepscope.run import load_run

    report = json.loads((Path(bench_dir) / BENCH_RESULT).read_text())

    def baselines() -> Iterator[tuple[TaskInstance, dict[str, list[np.ndarray]]]]:
        for row in report["instances"]:
            trajectory = load_run(str(Path(bench_dir) / row["dir"])).baseline
            videos = {"final_video": [trajectory.video], "step_previews": [m[0] for m in trajectory.previews]}
            yield TaskInstance.from_json(row["instance"]), videos

    return {
        "bench": {key: report.get(key) for key in ("model", "n", "steps", "canvas", "first_seed")},
        "families": video_shares(baselines()),
    }


def summarize(instances: list[dict], families: list[str], trajectory_names: list[str]) -> dict:
    """Per family × trajectory: the instances counted, the success rate with its 95% Wilson score interval
    (`stats.mean_interval` of 0/1 outcomes: not zero-width at 0/n or n/n), the mean score and the mean curves.
    Its size is bounded by the request (families × trajectories × steps), never by the number of instances."""
    count, success, interval, mean_score, curves = {}, {}, {}, {}, {}
    for family in families:
        rows = [r for r in instances if r["family"] == family]
        count[family], success[family], interval[family], mean_score[family], curves[family] = {}, {}, {}, {}, {}
        for name in trajectory_names:
            results = [r["trajectories"][name] for r in rows if name in r["trajectories"]]
            if not results:
                continue
            passed = [float(x["passed"]) for x in results]
            count[family][name] = len(results)
            success[family][name] = float(np.mean(passed))
            interval[family][name] = mean_interval(passed)
            mean_score[family][name] = float(np.mean([x["score"] for x in results]))
            lengths = {len(x["curves"]["live"]) for x in results}
            answers = [x["curves"]["answer"] for x in results]
            counts = [len(x["curves"]["labels"]) for x in results]
            entry: dict = {
                "explored_then_committed": float(np.mean([x["explored_then_committed"] for x in results])),
                # The last step's winners against chance (`curves.answer_win_shares`), with 95% Wilson intervals.
                "final": answer_win_shares([_last(x["curves"]["winner"]) for x in results], answers, counts),
            }
            if len(lengths) == 1:  # same steps in every run: average step by step
                live = np.asarray([x["curves"]["live"] for x in results], dtype=np.float64)
                per_step = [
                    answer_win_shares([x["curves"]["winner"][i] for x in results], answers, counts)
                    for i in range(lengths.pop())
                ]
                entry.update(
                    steps=results[0]["curves"]["steps"],
                    mean_live=live.mean(axis=0).tolist(),
                    answer_wins=[s["answer_wins"] for s in per_step],
                    answer_wins_chance=[s["chance"] for s in per_step],
                )
            curves[family][name] = entry
    return {
        "count": count,
        "success_rate": success,
        "interval": interval,
        "mean_score": mean_score,
        "curves": curves,
    }


def _last(values: list):
    return values[-1] if values else None


def table(summary: dict) -> str:
    """The summary as a Markdown table; `n` is the instances each row counts (fewer than asked in a partial bench)."""
    lines = [
        "| family | trajectory | n | success | 95% interval (Wilson) | mean score | explored then committed "
        "| last step: winner is the answer [95%] | chance |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for family, by_name in summary["success_rate"].items():
        for name, rate in by_name.items():
            lo, hi = summary["interval"][family][name]
            count = summary["count"][family][name]
            score = summary["mean_score"][family][name]
            curve = summary["curves"][family][name]
            final = curve.get("final")
            wins = (
                "—"
                if final is None
                else f"{final['answer_wins']:.3f} [{final['answer_wins_interval'][0]:.3f}, "
                f"{final['answer_wins_interval'][1]:.3f}]"
            )
            chance = "—" if final is None else f"{final['chance']:.3f}"
            lines.append(
                f"| {family} | {name} | {count} | {rate:.3f} | [{lo:.3f}, {hi:.3f}] | {score:.3f} | "
                f"{curve['explored_then_committed']:.3f} | {wins} | {chance} |"
            )
    note = (
        "\n\n*Chance*: the share a winner picked at random among each run's candidates would score (the mean of "
        "[a winner exists] / the number of candidates); a measure blind to the answer scores about this."
    )
    return "\n".join(lines) + note


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


class BenchRequest(BaseModel):
    """What one bench runs: the body of `POST /api/bench`, the options of `stepscope bench` (less --out and
    the device), and the spec of a bench job's record. Validate with `parse_bench_request`."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, title="BenchRequest")

    model: str = Field("tiny-i2v", min_length=1, max_length=300, description="the model (preset or served name)")
    tasks: list[str] = Field(
        default_factory=family_names, min_length=1, max_length=16, description="task families, each once"
    )
    n: int = Field(
        10, description=f"instances per family, 1 to {MAX_N}", json_schema_extra={"minimum": 1, "maximum": MAX_N}
    )
    variants: list[Variant] = Field(
        default_factory=list,
        max_length=MAX_VARIANTS,
        description="spec variants run beside the baseline on every instance (ExperimentSpec.variants)",
    )
    steps: int | None = Field(None, ge=1, le=MAX_STEPS, description="denoising steps (default: the preset's, else 20)")
    size: int = Field(
        Canvas.size,
        description=f"canvas side in pixels: a multiple of 16 from {MIN_SIZE} to {MAX_SIZE}",
        json_schema_extra={"minimum": MIN_SIZE, "maximum": MAX_SIZE, "multipleOf": 16},
    )
    frames: int = Field(
        Canvas.frames,
        description=f"video frames: 4k+1 from {MIN_FRAMES} to {MAX_FRAMES}",
        json_schema_extra={"minimum": MIN_FRAMES, "maximum": MAX_FRAMES},
    )
    difficulty: int | None = Field(
        None, ge=min(DIFFICULTIES), le=max(DIFFICULTIES), description="one difficulty (default: 1, 2, 3 in turn)"
    )
    first_seed: int = Field(0, ge=0, le=MAX_TASK_SEED, description="instance i uses seed first_seed + i")
    curves: Literal["preview", "decode"] = Field("preview", description="per-step video estimates to measure")

    @field_validator("tasks")
    @classmethod
    def _known_families(cls, v: list[str]) -> list[str]:
        known = family_names()
        for i, family in enumerate(v):
            if family not in known:
                raise SpecError(str(i), f"unknown task family {family!r}; known: {', '.join(known)}")
            if family in v[:i]:
                raise SpecError(str(i), f"{family!r} is listed twice")
        return v

    @field_validator("n")
    @classmethod
    def _instances(cls, v: int) -> int:
        if not 1 <= v <= MAX_N:
            raise ValueError(f"must be 1 to {MAX_N} instances per family, got {v}")
        return v

    @field_validator("size")
    @classmethod
    def _size(cls, v: int) -> int:
        try:
            Canvas(size=v)
        except TaskError as exc:
            raise ValueError(str(exc).removeprefix(f"{exc.field}: ")) from None
        return v

    @field_validator("frames")
    @classmethod
    def _frames(cls, v: int) -> int:
        try:
            Canvas(frames=v)
        except TaskError as exc:
            raise ValueError(str(exc).removeprefix(f"{exc.field}: ")) from None
        return v

    @model_validator(mode="after")
    def _within_limits(self):
        names = [v.name for v in self.variants]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise SpecError(f"variants.{i}.name", f"duplicate variant name {name!r}")
        if self.run_count > MAX_RUNS:
            raise SpecError(
                "n",
                f"{self.n} instances × {len(self.tasks)} families × {1 + len(self.variants)} trajectories "
                f"(baseline and variants) = {self.run_count} runs, over the limit of {MAX_RUNS}",
            )
        if self.first_seed + self.n - 1 > MAX_TASK_SEED:
            raise SpecError("first_seed", f"first_seed + n − 1 must stay ≤ {MAX_TASK_SEED} (instance seeds)")
        return self

    @property
    def instance_count(self) -> int:
        return self.n * len(self.tasks)

    @property
    def run_count(self) -> int:
        """Trajectory runs: every instance's baseline and variants."""
        return self.instance_count * (1 + len(self.variants))

    @property
    def canvas(self) -> Canvas:
        return Canvas(size=self.size, frames=self.frames)

    def resolved_steps(self) -> int:
        """`steps`, else the model preset's default, else 20."""
        from stepscope.models.presets import PRESETS

        preset = PRESETS.get(self.model)
        return self.steps or (preset.defaults.get("steps") if preset else None) or DEFAULT_STEPS

    def to_json(self) -> dict:
        return self.model_dump(mode="json")


def parse_bench_request(data: Any) -> BenchRequest:
    """Validate a JSON object into a BenchRequest; raise SpecError naming the first bad field
    (`n`, `tasks.1`, `variants.0.interventions.0.strength`, ...)."""
    if not isinstance(data, dict):
        raise SpecError("body", "expected a JSON object")
    try:
        return BenchRequest.model_validate(data)
    except ValidationError as exc:
        raise spec_error_from(exc) from None


def check_request(request: BenchRequest, info) -> None:
    """Checks that need the model (a `models.ModelInfo`): the spec of the first instance — the variants, steps and
    canvas every instance shares — must be valid and fit the model; raise SpecError naming the request's field."""
    instance = generate(request.tasks[0], request.difficulty or 1, request.first_seed, canvas=request.canvas)
    variants = [v.model_dump(mode="json") for v in request.variants]
    data = instance_spec(instance, request.model, info.task, request.resolved_steps(), variants, request.curves)
    try:
        spec = check_spec(data, info).spec
    except SpecError as exc:
        field = "size" if exc.field in ("height", "width") else exc.field  # the spec's names for the canvas
        raise SpecError(field, exc.message) from None
    for field, value in spec.images():
        # A variant's image (a layer swap's source) travels in the request: a data URL, as a job's images. A path
        # or anything else would be accepted here and fail in the worker; the first frame is the instance's own.
        if field != "image" and not is_data_url(value):
            raise ImageError(f"{field}: must be a data:image/...;base64 URL (a bench request carries its images)")
        if field != "image":
            decode_data_url(value, field)  # refuses a malformed or oversized image now, naming the field


def run_bench(
    model,
    families: list[str],
    n: int,
    out: str | RunDir,
    *,
    variants: list | None = None,
    steps: int | None = None,
    canvas: Canvas | None = None,
    difficulty: int | None = None,
    first_seed: int = 0,
    curves: str = "preview",
    log=None,
    emit: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    cache_dir: str | None = None,
    encoder_cache: EncoderCache | None = None,
) -> dict:
    """Run the benchmark on a loaded model (`stepscope.models.load_model`) into `out` (a path, URL or RunDir);
    returns what bench.json holds.

    After each instance, the summary (bench-summary.json: `summarize` of the instances so far, no per-instance list)
    and bench.md are replaced, so a process killed mid-bench leaves the instances it finished (`complete: false`).
    bench.json (the summary and every instance with its curves) is written at the end, or when the bench stops
    early for whatever reason, before the error goes on.

    `emit` gets a `bench_instance` event after each instance is stored and scored; `should_stop` is asked before
    each instance and at every step (true: stop with `Cancelled`; it may raise to stop otherwise).

    Every instance's experiment shares `encoder_cache` (a `probe.EncoderCache` of the model's pipeline; by default one
    for this bench): a family's prompt and the negative prompt are encoded once in the bench, each first frame once."""
    from stepscope.probe import Cancelled, EncoderCache, run_experiment

    if curves not in CURVE_SOURCES:
        raise TaskError("curves", f"must be one of {CURVE_SOURCES}, got {curves!r}")
    if n < 1:
        raise TaskError("n", f"must be at least 1, got {n}")
    variants = variants or []
    canvas = canvas or Canvas()
    steps = steps or DEFAULT_STEPS
    names = ["baseline", *[v.get("name") for v in variants if isinstance(v, dict)]]
    conditioned = model.info.task == "i2v"
    root = out if isinstance(out, RunDir) else RunDir.at(out)
    encoder_cache = encoder_cache if encoder_cache is not None else EncoderCache(model.pipe)
    total = len(families) * n
    instances: list[dict] = []

    def summary(complete: bool) -> dict:
        return {
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
            "complete": complete,
            "instances_done": len(instances),
            "instances_total": total,
            **summarize(instances, families, names),
        }

    def store_summary(result: dict) -> None:
        # The summary and table are small and replaced whole (write then rename): a reader never sees half of one.
        root.write_json(BENCH_SUMMARY, result)
        partial = "" if result["complete"] else f"\n\nPartial: {len(instances)} of {total} instances ran.\n"
        root.write_bytes(BENCH_TABLE, (table(result) + "\n" + partial).encode())

    def store_all(result: dict) -> dict:
        full = {**result, "instances": instances}
        root.write_json(BENCH_RESULT, full)  # first: a summary saying it is complete finds bench.json beside it
        store_summary(result)
        return full

    try:
        for family in families:
            for i in range(n):
                if should_stop is not None and should_stop():
                    raise Cancelled(f"cancelled after {len(instances)} of {total} bench instances")
                level = difficulty or 1 + i % 3
                instance = generate(family, level, first_seed + i, canvas=canvas)
                data = instance_spec(instance, model.name, model.info.task, steps, variants, curves)
                checked = check_spec(data, model.info)
                rel = bench_instance_dir(family, instance.seed)
                run = root.subdir(rel)
                run_experiment(
                    model, checked, run, should_stop=should_stop, cache_dir=cache_dir, encoder_cache=encoder_cache
                )
                scored = score_run(instance, run, curves, stored=True)  # the run scored itself
                instances.append(
                    {
                        "family": family,
                        "seed": instance.seed,
                        "difficulty": level,
                        "dir": rel,  # relative to the bench directory: no machine's absolute path is stored
                        "instance": instance.to_json(),
                        "trajectories": scored,
                    }
                )
                store_summary(summary(complete=False))  # before the event: whoever saw it finds it counted
                if emit is not None:
                    results = {k: {"score": v["score"], "passed": v["passed"]} for k, v in scored.items()}
                    progress = {"done": len(instances) * len(names), "total": total * len(names)}
                    emit(events.bench_instance_event(family, instance.seed, level, rel, results, progress))
                if log:
                    verdicts = ", ".join(f"{k}={'pass' if v['passed'] else 'fail'}" for k, v in scored.items())
                    log(f"{family} seed {instance.seed}: {verdicts}")
    except BaseException:
        if instances:  # keep what finished; never let this hide the error that stopped the bench
            try:
                store_all(summary(complete=False))
            except Revoked:
                pass  # the job was failed by the janitor: its writer may write nothing more
            except Exception:
                _logger.exception("could not store the partial bench result")
        raise
    return store_all(summary(complete=True))


def run_request(
    model,
    request: BenchRequest,
    out: str | RunDir,
    *,
    log=None,
    emit: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    cache_dir: str | None = None,
) -> dict:
    """Run a validated BenchRequest on a loaded model into `out`: what `stepscope bench` and a bench job both do."""
    return run_bench(
        model,
        list(request.tasks),
        request.n,
        out,
        variants=[v.model_dump(mode="json") for v in request.variants],
        steps=request.resolved_steps(),
        canvas=request.canvas,
        difficulty=request.difficulty,
        first_seed=request.first_seed,
        curves=request.curves,
        log=log,
        emit=emit,
        should_stop=should_stop,
        cache_dir=cache_dir,
    )


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
    parser = argparse.ArgumentParser(prog="python -m stepscope.bench", description=__doc__.splitlines()[0])
    return run_from_args(add_arguments(parser).parse_args(argv))


def request_from_args(args: argparse.Namespace) -> BenchRequest:
    """The BenchRequest of parsed options (see add_arguments); SpecError or TaskError names the bad one."""
    data = {
        "model": args.model,
        "tasks": [f.strip() for f in args.tasks.split(",") if f.strip()],
        "n": args.n,
        "variants": load_variants(args.variants),
        "size": args.size,
        "frames": args.frames,
        "first_seed": args.first_seed,
        "curves": args.curves,
    }
    data.update({k: getattr(args, k) for k in ("steps", "difficulty") if getattr(args, k) is not None})
    return parse_bench_request(data)


def run_from_args(args: argparse.Namespace) -> int:
    """Run the bench from parsed options (see add_arguments); returns the exit status."""
    try:
        request = request_from_args(args)
    except (SpecError, TaskError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    from stepscope.config import get_settings
    from stepscope.models import ModelError, load_model

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    out = args.out or f"runs/bench-{args.model.replace('/', '_')}-{stamp}"
    try:
        model = load_model(args.model, device=args.device or get_settings().device, dtype=args.dtype)
        check_request(request, model.info)
        report = run_request(model, request, out, log=None if args.json else lambda line: print(line, file=sys.stderr))
    except (ModelError, SpecError, TaskError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        keys = ("model", "n", "steps", "success_rate", "interval", "mean_score", "conditioned_on_first_frame")
        print(json.dumps({**{k: report[k] for k in keys}, "out": out}))
    else:
        print(table(report))
        print(f"\nwritten to {out}/{BENCH_RESULT} and {out}/{BENCH_TABLE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
