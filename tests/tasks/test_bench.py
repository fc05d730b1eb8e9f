"""The benchmark runner on the random-weight tiny image-to-video model: structure, about-zero scores, and the
scorer path proven by ground-truth videos written into the runs."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from stepscope.run import load_run
from stepscope.store import RunDir
from stepscope.tasks import TaskInstance, family_names
from stepscope.tasks.bench import add_arguments, bootstrap_interval, main, score_run

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
            assert summary["interval"][family][name] == [0.0, 0.0]
    assert summary["conditioned_on_first_frame"] is True
    report = json.loads((out / "bench.json").read_text())
    assert len(report["instances"]) == 2 * len(families)
    assert "| maze | baseline | 0.000 |" in (out / "bench.md").read_text()
    for row in report["instances"]:
        instance = TaskInstance.from_json(row["instance"])
        manifest = RunDir.at(row["run"]).manifest()
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


def test_ground_truth_written_into_a_run_scores_one(bench):
    out, _ = bench
    report = json.loads((out / "bench.json").read_text())
    seen = set()
    for row in report["instances"]:
        if row["family"] in seen:
            continue
        seen.add(row["family"])
        instance = TaskInstance.from_json(row["instance"])
        run = RunDir.at(row["run"])
        stored = next(d for d in load_run(row["run"]).baseline.entry["decodes"] if d["step"] == "final")
        count = stored["frames"]
        before = score_run(instance, row["run"])["baseline"]
        assert not before["passed"]
        for video, should_pass in (
            (instance.family_impl.wrong_video(instance), False),
            (instance.ground_truth(), True),
        ):
            # Written as the engine stores a decode: one JPEG per frame, as many frames as the run has.
            for i, t in enumerate(np.round(np.linspace(0, len(video) - 1, count)).astype(int)):
                run.write_image(f"{stored['dir']}/frame_{i:03d}.jpg", video[t])
            scored = score_run(instance, row["run"])
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
    assert RunDir.at(row["run"]).manifest()["spec"]["frames"] == 17
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


def test_bootstrap_interval_brackets_the_rate():
    outcomes = [1.0] * 30 + [0.0] * 70
    lo, hi = bootstrap_interval(outcomes)
    assert lo < 0.3 < hi and 0.19 < lo and hi < 0.41
    assert bootstrap_interval([1.0, 1.0]) == [1.0, 1.0]
    assert np.isfinite(bootstrap_interval([0.0, 1.0])).all()


def test_bench_options_fit_a_subcommand():
    # How `stepscope bench` wires in: the same options on a subparser.
    parser = argparse.ArgumentParser()
    add_arguments(parser.add_subparsers(dest="command").add_parser("bench"))
    args = parser.parse_args(["bench", "--model", "tiny-i2v", "--n", "3", "--json"])
    assert (args.model, args.n, args.json, args.steps, args.size, args.frames) == ("tiny-i2v", 3, True, None, 64, 17)
    assert args.tasks.split(",") == family_names()
