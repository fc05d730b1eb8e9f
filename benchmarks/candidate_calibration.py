"""Are the candidate measures blind to the answer? The calibration of docs/tasks.md, written as results.

    python benchmarks/candidate_calibration.py --n 3000 [--bench DIR] [--out benchmarks/results/candidate-calibration]

For every family, n answer-free videos per condition (uniform and grey noise, at full and at preview resolution;
`stepscope.tasks.calibration`): the share whose winner is the answer beside chance, with 95% Wilson intervals;
the ground truth's check (one live candidate, the answer); what the curves of a model that draws nothing say
(20 independent noise previews as its steps: explored then committed, and to the answer beside chance); the
maze's structure (is the goal's branch like the other dead ends'?); with `--bench DIR`, a stored bench's
baseline final videos and per-step previews (e.g. `stepscope bench --model tiny-i2v`: random weights, no answer
drawn). Writes OUT/<label>.json (everything) and OUT/<label>.md (the tables), prints the tables, and exits 1
when a share is more than 0.05 off chance.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))

from stepscope.bench import calibrate_bench  # noqa: E402  (reads the stored runs, then measures with the suite)
from stepscope.tasks.calibration import (  # noqa: E402
    MIN_WINNERS,
    TOLERANCE,
    calibrate_family,
    maze_structure,
    noise_curves,
    table,
)
from stepscope.tasks.core import family_names  # noqa: E402


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _share(value: float | None, interval: list[float] | None) -> str:
    return "—" if value is None else f"{value:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"


def markdown(record: dict) -> str:
    """The record as Markdown tables."""
    lines = [
        f"# Candidate measures against chance ({record['label']})",
        "",
        f"{record['created']}, commit {record['commit']}, {record['seconds']:.0f} s on {record['machine']}. "
        f"`{record['command']}`",
        "",
        f"Answer-free videos: n per family and condition (instance i: difficulty 1 + i % 3, seed i). A share is "
        f"judged within ±{TOLERANCE} of chance of all videos always, and among the videos with a winner when there "
        f"are at least {MIN_WINNERS} of them (fewer cannot resolve ±{TOLERANCE}; the family's `all` row pools the "
        "four conditions).",
        "",
        table(record["noise"]),
        "",
        "| family | ground truth: one live candidate, the answer (full resolution) | (preview resolution) |",
        "|---|---|---|",
    ]
    for result in record["noise"]:
        gt = result["ground_truth_one_live_answer"]
        lines.append(f"| {result['family']} | {gt['full']:.3f} | {gt['preview']:.3f} |")
    lines += [
        "",
        "Curves of a model that draws nothing: 20 independent uniform-noise previews as one run's steps.",
        "",
        "| family | curves | explored then committed | committed to the answer | chance |",
        "|---|---|---|---|---|",
    ]
    for c in record["noise_curves"]:
        lines.append(
            f"| {c['family']} | {c['n']} | "
            f"{_share(c['explored_then_committed'], c['explored_then_committed_interval'])} | "
            f"{_share(c['committed_to_the_answer'], c['committed_to_the_answer_interval'])} | {c['chance']:.3f} |"
        )
    if "maze_structure" in record:
        lines += [
            "",
            "Maze: the goal's branch against the other candidate ends' (means over the instances).",
            "",
            "| candidates | count | own cells | route moves | on the border |",
            "|---|---|---|---|---|",
        ]
        for who, row in record["maze_structure"].items():
            lines.append(
                f"| {who} | {row['count']} | {row['own_cells']:.3f} | {row['route_moves']:.3f} | "
                f"{row['on_border']:.3f} |"
            )
    if "bench" in record:
        bench = record["bench"]
        lines += [
            "",
            f"Stored bench re-measured: {json.dumps(bench['bench'])}.",
            "",
            "| family | videos | n | with a winner | winner is the answer (of all) | chance | "
            "winner is the answer (with a winner) | chance |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for family, by_source in bench["families"].items():
            for source, s in by_source.items():
                when = "—" if s["chance_when_winner"] is None else f"{s['chance_when_winner']:.3f}"
                lines.append(
                    f"| {family} | {source} | {s['n']} | {s['with_winner'] / s['n']:.3f} | "
                    f"{_share(s['answer_wins'], s['answer_wins_interval'])} | {s['chance']:.3f} | "
                    f"{_share(s['answer_wins_when_winner'], s['answer_wins_when_winner_interval'])} | {when} |"
                )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="answer-free videos per family and condition")
    parser.add_argument("--families", default=",".join(family_names()))
    parser.add_argument("--curves", type=int, default=500, help="20-step noise curves per family")
    parser.add_argument("--bench", help="a stored bench directory to re-measure too")
    parser.add_argument("--label", default="current", help="the results' file name")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "candidate-calibration"))
    parser.add_argument("--code", help="what code is measured, where it is not this checkout's commit")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    record: dict = {
        "label": args.label,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": args.code or _commit(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "command": "python benchmarks/candidate_calibration.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "tolerance": TOLERANCE,
        "min_winners": MIN_WINNERS,
        "noise": [calibrate_family(family, args.n) for family in families],
    }
    record["noise_curves"] = [noise_curves(family, args.curves) for family in families]
    if "maze" in families:
        record["maze_structure"] = maze_structure(args.n)
    if args.bench:
        record["bench"] = calibrate_bench(args.bench)
    record["seconds"] = round(time.perf_counter() - started, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.label}.json").write_text(json.dumps(record, indent=1) + "\n")
    text = markdown(record)
    (out / f"{args.label}.md").write_text(text)
    print(text)
    ok = all(s["judged"]["ok"] for r in record["noise"] for s in r["conditions"].values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
