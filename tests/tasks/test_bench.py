"""The benchmark runner on the random-weight tiny image-to-video model: structure, about-zero scores, and the
scorer path proven by ground-truth videos written into the runs."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from stepscope.bench import add_arguments, main, score_run, summarize, table
from stepscope.run import load_run
from stepscope.run_format import BENCH_RESULT, BENCH_SUMMARY
from stepscope.stats import wilson_interval
from stepscope.store import RunDir
from stepscope.tasks import TaskInstance, family_names

NOISE = {"name": "noise8", "interventions": [{"kind": "noise_at_step", "steps": [1], "strength": 1.0}]}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """One small bench through the command line: mazes, n=2, 2 steps, one variant, curves from step decodes
    (scorer and curves are the same code for every family; tests/tasks/test_tasks.py covers each family)."""
    out = tmp_path_factory.mktemp("bench")
    variants = out / "variants.json"
    variants.write_text(json.dumps([NOISE]))
    argv = ["--model", "tiny-i2v", "--tasks", "maze", "--n", "2", "--steps", "2", "--variants", str(variants)]
    argv += ["--curves", "decode"]  # full decodes of each step (the default, previews, runs in the twin below)
    argv += ["--out", str(out / "runs"), "--json"]
    return out / "runs", argv


def test_bench_json_summary_and_report(bench, capsys):
    out, argv = bench
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])
    families = ["maze"]
    assert set(summary["success_rate"]) == set(families)
    for family in families:
        assert set(summary["success_rate"][family]) == {"baseline", "noise8"}
        for name in ("baseline", "noise8"):
            # Random weights solve nothing.
            assert summary["success_rate"][family][name] == 0.0
            # 0 of 2: Wilson's interval, not the bootstrap's zero-width [0, 0].
            assert summary["interval"][family][name] == pytest.approx(wilson_interval(0, 2))
            assert summary["interval"][family][name][1] > 0.6
    assert summary["conditioned_on_first_frame"] is True
    report = json.loads((out / BENCH_RESULT).read_text())
    assert len(report["instances"]) == 2 * len(families)
    # The summary file is bench.json without the per-instance list; no absolute path is stored.
    assert json.loads((out / BENCH_SUMMARY).read_text()) == {k: v for k, v in report.items() if k != "instances"}
    assert all("run" not in row for row in report["instances"]) and str(out) not in (out / BENCH_RESULT).read_text()
    assert "| maze | baseline | 2 | 0.000 |" in (out / "bench.md").read_text()
    for row in report["instances"]:
        instance = TaskInstance.from_json(row["instance"])
        manifest = RunDir.at(str(out / row["dir"])).manifest()
        assert manifest["inputs"]["image"]  # the first frame was the conditioning image
        assert manifest["spec"]["prompt"] == instance.prompt
        for name in ("baseline", "noise8"):
            # 17 frames: the final decode and the next trajectory's first-frame encode did not share the VAE at once.
            decodes = manifest["trajectories"][name]["decodes"]
            assert "final" in [d["step"] for d in decodes] and {d["frames"] for d in decodes} == {17}
            curves = row["trajectories"][name]["curves"]
            assert curves["steps"] == [0, 1]
            assert all(len(m) == len(instance.candidates) for m in curves["masses"])
            assert curves["answer"] == instance.answer


def test_the_calibration_re_measures_a_stored_bench(bench):
    # What `benchmarks/candidate_calibration.py --bench DIR` reports: every baseline's final video and step previews.
    from stepscope.bench import calibrate_bench

    out, _ = bench
    report = json.loads((out / BENCH_RESULT).read_text())
    found = calibrate_bench(str(out))
    assert found["bench"]["model"] == "tiny-i2v" and set(found["families"]) == {"maze"}
    finals, previews = [], []
    for row in report["instances"]:
        instance = TaskInstance.from_json(row["instance"])
        baseline = load_run(str(out / row["dir"])).baseline
        k = len(instance.candidates)
        finals.append((instance.measure_candidates(baseline.video).winner, instance.answer, k))
        previews += [(instance.measure_candidates(m[0]).winner, instance.answer, k) for m in baseline.previews]
    for source, measured in (("final_video", finals), ("step_previews", previews)):
        shares = found["families"]["maze"][source]
        assert shares["n"] == len(measured) == (2 if source == "final_video" else 2 * 2)
        assert shares["answer_wins"] == pytest.approx(sum(w == a for w, a, _ in measured) / len(measured))
        assert shares["chance"] == pytest.approx(sum((w is not None) / k for w, _, k in measured) / len(measured))


def test_ground_truth_written_into_a_run_scores_one(bench):
    out, _ = bench
    report = json.loads((out / "bench.json").read_text())
    seen = set()
    for row in report["instances"]:
        if row["family"] in seen:
            continue
        seen.add(row["family"])
        instance = TaskInstance.from_json(row["instance"])
        path = str(out / row["dir"])
        run = RunDir.at(path)
        stored = next(d for d in load_run(path).baseline.entry["decodes"] if d["step"] == "final")
        count = stored["frames"]
        before = score_run(instance, path)["baseline"]
        assert not before["passed"]
        for video, should_pass in (
            (instance.family_impl.wrong_video(instance), False),
            (instance.ground_truth(), True),
        ):
            # Written as the engine stores a decode: one JPEG per frame, as many frames as the run has.
            for i, t in enumerate(np.round(np.linspace(0, len(video) - 1, count)).astype(int)):
                run.write_image(f"{stored['dir']}/frame_{i:03d}.jpg", video[t])
            scored = score_run(instance, path)
            assert scored["baseline"]["passed"] is should_pass, (row["family"], scored["baseline"]["reason"])
            assert scored["noise8"]["passed"] is False  # the variant's video is untouched
        assert scored["baseline"]["score"] == pytest.approx(1.0)
    assert seen == {"maze"}


def test_bench_at_the_default_steps_and_frames(tmp_path, capsys):
    """The twin of the small bench above: the preset's 20 steps and the default 17-frame canvas."""
    assert main(["--model", "tiny-i2v", "--tasks", "maze", "--n", "1", "--out", str(tmp_path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 20 and summary["success_rate"] == {"maze": {"baseline": 0.0}}
    row = json.loads((tmp_path / "bench.json").read_text())["instances"][0]
    assert RunDir.at(str(tmp_path / row["dir"])).manifest()["spec"]["frames"] == 17
    assert row["trajectories"]["baseline"]["curves"]["steps"] == list(range(20))


def test_bad_arguments_name_the_field(tmp_path, capsys):
    assert main(["--tasks", "maze,sudoku", "--out", str(tmp_path)]) == 2
    assert "tasks.1: unknown task family 'sudoku'" in capsys.readouterr().err
    assert main(["--n", "0", "--out", str(tmp_path)]) == 2
    assert "n: must be 1 to 500 instances per family, got 0" in capsys.readouterr().err
    assert main(["--frames", "18", "--out", str(tmp_path)]) == 2
    assert "frames: must be 4k+1" in capsys.readouterr().err
    bad = tmp_path / "v.json"
    bad.write_text('{"variants": 3}')
    assert main(["--variants", str(bad), "--out", str(tmp_path)]) == 2
    assert "variants:" in capsys.readouterr().err
    bad.write_text(json.dumps([{**NOISE, "interventions": [{"kind": "noise_at_step", "steps": [1], "strength": -1}]}]))
    assert main(["--variants", str(bad), "--out", str(tmp_path)]) == 2
    assert "variants.0.interventions.0.strength:" in capsys.readouterr().err
    bad.write_text(json.dumps([NOISE]))  # 400 instances × 3 families × (baseline + 1 variant) = 2,400 runs
    assert main(["--n", "400", "--variants", str(bad), "--out", str(tmp_path)]) == 2
    assert (
        "n: 400 instances × 3 families × 2 trajectories (baseline and variants) = 2400 runs" in capsys.readouterr().err
    )
    assert not list(tmp_path.glob("*/seed*"))  # refused before anything ran


def test_bench_options_fit_a_subcommand():
    # How `stepscope bench` wires in: the same options on a subparser.
    parser = argparse.ArgumentParser()
    add_arguments(parser.add_subparsers(dest="command").add_parser("bench"))
    args = parser.parse_args(["bench", "--model", "tiny-i2v", "--n", "3", "--json"])
    assert (args.model, args.n, args.json, args.steps, args.size, args.frames) == ("tiny-i2v", 3, True, None, 64, 17)
    assert args.tasks.split(",") == family_names()


def test_the_summary_is_stored_after_every_instance(tmp_path):
    """A process killed mid-bench leaves the summary of the instances it finished: it is replaced after each one
    (before the instance's event), while the large bench.json waits for the end."""
    from stepscope.bench import run_bench
    from stepscope.models import load_model

    model = load_model("tiny-i2v", device="cpu")
    seen = []

    def emit(event: dict) -> None:
        summary = json.loads((tmp_path / BENCH_SUMMARY).read_text())
        seen.append((event["seed"], summary["complete"], summary["instances_done"], (tmp_path / BENCH_RESULT).exists()))
        assert "instances" not in summary and summary["count"]["maze"]["baseline"] == summary["instances_done"]
        assert f"| maze | baseline | {summary['instances_done']} |" in (tmp_path / "bench.md").read_text()

    report = run_bench(model, ["maze"], 2, str(tmp_path), steps=2, emit=emit)
    assert seen == [(0, False, 1, False), (1, False, 2, False)]
    assert report["complete"] is True and json.loads((tmp_path / BENCH_SUMMARY).read_text())["complete"] is True
    assert len(json.loads((tmp_path / BENCH_RESULT).read_text())["instances"]) == 2


def test_the_summary_puts_chance_beside_each_candidate_curve():
    def row(answer: int, labels: int, winners: list) -> dict:
        curves = {
            "steps": [0, 1],
            "labels": [f"c{j}" for j in range(labels)],
            "answer": answer,
            "masses": [[0.0] * labels] * 2,
            "live": [int(w is not None) for w in winners],
            "winner": winners,
        }
        result = {"passed": False, "score": 0.0, "explored_then_committed": False, "curves": curves}
        return {"family": "maze", "trajectories": {"baseline": result}}

    rows = [row(0, 2, [None, 0]), row(1, 4, [2, 1]), row(2, 5, [None, None])]
    curve = summarize(rows, ["maze"], ["baseline"])["curves"]["maze"]["baseline"]
    assert curve["answer_wins"] == pytest.approx([0, 2 / 3])
    # Chance: a winner picked at random among each run's candidates, where the run has a winner at that step.
    assert curve["answer_wins_chance"] == pytest.approx([(0 + 1 / 4 + 0) / 3, (1 / 2 + 1 / 4 + 0) / 3])
    final = curve["final"]
    assert final["answer_wins"] == pytest.approx(2 / 3) and final["chance"] == pytest.approx((1 / 2 + 1 / 4) / 3)
    assert final["answer_wins_when_winner"] == 1.0 and final["chance_when_winner"] == pytest.approx(3 / 8)
    summary = {
        "success_rate": {"maze": {"baseline": 0.0}},
        "interval": {"maze": {"baseline": [0.0, 0.56]}},
        "count": {"maze": {"baseline": 3}},
        "mean_score": {"maze": {"baseline": 0.0}},
        "curves": {"maze": {"baseline": curve}},
    }
    text = table(summary)
    lo, hi = final["answer_wins_interval"]
    assert f"| 0.000 | 0.667 [{lo:.3f}, {hi:.3f}] | 0.250 |" in text and "*Chance*" in text
