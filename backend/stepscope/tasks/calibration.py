"""Is a candidate measure blind to the answer? Measure videos that carry no answer and compare how often the winner
is the answer with chance (`curves.answer_win_shares`).

    python -m stepscope.tasks.calibration --n 3000 [--families maze,...] [--json]

Answer-free videos, one per instance and condition (instance i: difficulty 1 + i % 3, seed first_seed + i):
uniform noise (every channel of every pixel uniform in 0..255) and grey noise (normal around 0.5 with σ 0.3 on a
0..1 scale, clipped, × 255), each at full resolution (T × S × S) and at preview resolution (a latent-resolution
x̂₀ preview: (T − 1) / 4 + 1 frames of S / 8 × S / 8 pixels, read as T × S × S like any video). A measure blind
to the answer names it as often as a winner picked at random among the candidates: `chance`. Beside them, the
real-signal check (the ground truth, at full and at preview resolution, gives one live candidate, the answer),
the maze's structure (is the goal's branch unlike the other dead ends?) and `video_shares`, the same shares for
videos a caller brings: `stepscope.bench.calibrate_bench` reads a stored bench's final videos and per-step previews
(e.g. a random-weight model's: `stepscope bench --model tiny-i2v`) and passes them here, so the suite reads no runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from collections.abc import Callable, Iterable

import numpy as np

from stepscope.stats import mean_interval
from stepscope.tasks.core import CELL, Canvas, TaskInstance, family_names, generate
from stepscope.tasks.curves import answer_win_shares, candidate_curves, chance_level

TOLERANCE = 0.05  # |share whose winner is the answer − chance| a measure blind to the answer stays within
MIN_WINNERS = 300  # a share among measures with a winner is judged on at least this many (standard error ≤ 0.029)
POOLED = "all"  # the row of every condition's videos together
GREY_MEAN, GREY_STD = 0.5, 0.3  # grey noise, on a 0..1 scale


def _uniform(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, 256, size=shape, dtype=np.int64).astype(np.uint8)


def _grey(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return np.round(np.clip(rng.normal(GREY_MEAN, GREY_STD, size=shape), 0.0, 1.0) * 255).astype(np.uint8)


def full_shape(canvas: Canvas) -> tuple[int, int, int, int]:
    return (canvas.frames, canvas.size, canvas.size, 3)


def preview_shape(canvas: Canvas) -> tuple[int, int, int, int]:
    """A latent-resolution preview: one frame per latent frame of a 4× temporal VAE, one pixel per 8 × 8 cell."""
    return ((canvas.frames - 1) // 4 + 1, canvas.size // CELL, canvas.size // CELL, 3)


# Name → (rng, canvas) → an answer-free video.
CONDITIONS: dict[str, Callable[[np.random.Generator, Canvas], np.ndarray]] = {
    "uniform_full": lambda rng, canvas: _uniform(rng, full_shape(canvas)),
    "grey_full": lambda rng, canvas: _grey(rng, full_shape(canvas)),
    "uniform_preview": lambda rng, canvas: _uniform(rng, preview_shape(canvas)),
    "grey_preview": lambda rng, canvas: _grey(rng, preview_shape(canvas)),
}


def answer_free_video(condition: str, instance: TaskInstance) -> np.ndarray:
    """The answer-free video of `condition` for an instance: its noise depends only on (family, seed, condition)."""
    if condition not in CONDITIONS:
        raise ValueError(f"condition: unknown {condition!r}; known: {', '.join(CONDITIONS)}")
    key = [zlib.crc32(instance.family.encode()), instance.seed, list(CONDITIONS).index(condition)]
    return CONDITIONS[condition](np.random.default_rng(key), instance.canvas)


def preview_of(video: np.ndarray) -> np.ndarray:
    """What a latent-resolution preview of a video looks like: each 8 × 8 cell's mean, every fourth frame."""
    frames, size = video.shape[0], video.shape[1]
    grid = size // CELL
    cells = video.astype(np.float32).reshape(frames, grid, CELL, grid, CELL, 3).mean(axis=(2, 4))
    return np.round(cells[::4]).astype(np.uint8)


def judge(shares: dict, tolerance: float = TOLERANCE, min_winners: int = MIN_WINNERS) -> dict:
    """Whether each share is within `tolerance` of its chance level: `of_all` always, `when_winner` only over at
    least `min_winners` measures with a winner (else None: too few to resolve ±tolerance); `ok` when none is off."""
    of_all = abs(shares["answer_wins"] - shares["chance"]) <= tolerance
    when = None
    if shares["with_winner"] >= min_winners:
        when = abs(shares["answer_wins_when_winner"] - shares["chance_when_winner"]) <= tolerance
    return {"of_all": bool(of_all), "when_winner": when, "ok": bool(of_all and when is not False)}


def calibrate_family(family: str, n: int, first_seed: int = 0, conditions: list[str] | None = None) -> dict:
    """Per condition, the answer-win shares of `n` answer-free videos beside chance; and the ground-truth check."""
    conditions = conditions or list(CONDITIONS)
    started = time.perf_counter()
    outcomes: dict[str, tuple[list, list, list]] = {c: ([], [], []) for c in conditions}
    truth = {"full": 0, "preview": 0}
    for i in range(n):
        instance = generate(family, 1 + i % 3, first_seed + i)
        k = len(instance.candidates)
        for condition in conditions:
            measure = instance.measure_candidates(answer_free_video(condition, instance))
            winners, answers, counts = outcomes[condition]
            winners.append(measure.winner)
            answers.append(instance.answer)
            counts.append(k)
        video = instance.ground_truth()
        for name, shown in (("full", video), ("preview", preview_of(video))):
            measure = instance.measure_candidates(shown)
            truth[name] += measure.live == 1 and measure.winner == instance.answer
    results = {}
    pooled: tuple[list, list, list] = ([], [], [])
    for condition, lists in outcomes.items():
        results[condition] = answer_win_shares(*lists)
        for into, values in zip(pooled, lists, strict=True):
            into.extend(values)
    results[POOLED] = answer_win_shares(*pooled)
    for shares in results.values():
        shares["judged"] = judge(shares)
    return {
        "family": family,
        "n": n,
        "first_seed": first_seed,
        "conditions": results,
        "ground_truth_one_live_answer": {k: v / n for k, v in truth.items()},
        "seconds": round(time.perf_counter() - started, 1),
    }


def noise_curves(family: str, n: int, steps: int = 20, first_seed: int = 0) -> dict:
    """What the curves say about a model that draws nothing: per instance, `steps` independent uniform-noise
    previews as its steps' estimates. The share of curves that explored then committed, and the share that
    committed to the answer beside its chance (the mean of [explored then committed] / K)."""
    committed, to_answer, chance = [], [], []
    for i in range(n):
        instance = generate(family, 1 + i % 3, first_seed + i)
        rng = np.random.default_rng([zlib.crc32(instance.family.encode()), instance.seed, len(CONDITIONS)])
        curves = candidate_curves(instance, [_uniform(rng, preview_shape(instance.canvas)) for _ in range(steps)])
        etc = curves.explored_then_committed()
        committed.append(float(etc))
        to_answer.append(float(etc and curves.final_winner == instance.answer))
        chance.append(etc * chance_level(len(instance.candidates)))
    return {
        "family": family,
        "n": n,
        "steps": steps,
        "explored_then_committed": float(np.mean(committed)),
        "explored_then_committed_interval": mean_interval(committed),
        "committed_to_the_answer": float(np.mean(to_answer)),
        "committed_to_the_answer_interval": mean_interval(to_answer),
        "chance": float(np.mean(chance)),
    }


def maze_structure(n: int, first_seed: int = 0) -> dict:
    """Is the goal a dead end like the others? Its own cells (those the measure reads), route length and place on
    the border, against the other candidates' (instance i: difficulty 1 + i % 3, seed first_seed + i)."""
    from stepscope.tasks.families.maze import Maze, path_to, tree_paths

    maze = Maze()
    rows = {"answer": [], "others": []}
    for i in range(n):
        instance = generate("maze", 1 + i % 3, first_seed + i)
        p = instance.params
        opened = np.asarray(p["open"], dtype=bool)
        parent = tree_paths(opened, tuple(p["start"]))
        grid = opened.shape[0]
        for j, (own, end) in enumerate(zip(maze.exclusive_cells(instance), p["ends"], strict=True)):
            row = {
                "own_cells": len(own),
                "route_moves": len(path_to(parent, tuple(end))) - 1,
                "on_border": float(end[0] in (0, grid - 1) or end[1] in (0, grid - 1)),
            }
            rows["answer" if j == instance.answer else "others"].append(row)
    return {
        who: {key: float(np.mean([r[key] for r in group])) for key in group[0]} | {"count": len(group)}
        for who, group in rows.items()
    }


def video_shares(videos: Iterable[tuple[TaskInstance, dict[str, list[np.ndarray]]]]) -> dict:
    """The answer-win shares of videos measured now, per family and source: `videos` gives each instance with its
    videos by source (e.g. {"final_video": [...], "step_previews": [...]}); each source's videos are pooled."""
    pooled: dict[str, dict[str, tuple[list, list, list]]] = {}
    for instance, sources in videos:
        k = len(instance.candidates)
        for source, shown in sources.items():
            winners, answers, counts = pooled.setdefault(instance.family, {}).setdefault(source, ([], [], []))
            for video in shown:
                winners.append(instance.measure_candidates(video).winner)
                answers.append(instance.answer)
                counts.append(k)
    return {
        family: {source: answer_win_shares(*lists) for source, lists in by_source.items()}
        for family, by_source in pooled.items()
    }


def _fmt_share(value: float | None, interval: list[float] | None) -> str:
    if value is None:
        return "—"
    return f"{value:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"


def _verdict(judged: dict, with_winner: int) -> str:
    if not judged["ok"]:
        return "**no**"
    if judged["when_winner"] is None:
        return f"of all: yes; with a winner: {with_winner} too few to judge"
    return "yes"


def table(results: list[dict]) -> str:
    """The noise calibration as a Markdown table: a row per family × condition."""
    lines = [
        "| family | condition | n | with a winner | winner is the answer (of all) | chance | "
        "winner is the answer (with a winner) | chance | within ±0.05 of chance |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        for condition, s in result["conditions"].items():
            when_chance = "—" if s["chance_when_winner"] is None else f"{s['chance_when_winner']:.3f}"
            lines.append(
                f"| {result['family']} | {condition} | {s['n']} | {s['with_winner'] / s['n']:.3f} | "
                f"{_fmt_share(s['answer_wins'], s['answer_wins_interval'])} | {s['chance']:.3f} | "
                f"{_fmt_share(s['answer_wins_when_winner'], s['answer_wins_when_winner_interval'])} | "
                f"{when_chance} | {_verdict(s['judged'], s['with_winner'])} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: prints the table (or one JSON object); exit status 1 when a share is off chance."""
    parser = argparse.ArgumentParser(prog="python -m stepscope.tasks.calibration", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="instances (answer-free videos a condition) per family")
    parser.add_argument("--families", default=",".join(family_names()), help="comma-separated families")
    parser.add_argument("--first-seed", type=int, default=0, help="instance i uses seed first_seed + i")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("--n: must be at least 1")
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    results = [calibrate_family(family, args.n, args.first_seed) for family in families]
    out = {"tolerance": TOLERANCE, "noise": results}
    if "maze" in families:
        out["maze_structure"] = maze_structure(args.n, args.first_seed)
    if args.json:
        print(json.dumps(out))
    else:
        print(table(results))
        for result in results:
            print(
                f"{result['family']}: ground truth gives one live candidate, the answer: "
                f"{result['ground_truth_one_live_answer']}  ({result['seconds']} s)"
            )
    ok = all(s["judged"]["ok"] for r in results for s in r["conditions"].values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
