"""A run whose spec names a task scores itself: each trajectory's final video, each captured step's preview,
and every sweep member's score on its sweep's curve."""

from __future__ import annotations

import numpy as np
import pytest

import stepscope
from stepscope.bench import image_data_url, instance_spec, score_run
from stepscope.probe import run_experiment
from stepscope.spec import SpecError, check_spec, parse_spec
from stepscope.tasks import Canvas, candidate_curves, generate

SMALLEST = Canvas(size=64, frames=9)  # the smallest canvas the tasks support (docs/tasks.md)


def _spec(instance, **extra) -> dict:
    spec = instance_spec(instance, "tiny-i2v", "i2v", steps=3, variants=[], curves="preview")
    return {**spec, **extra}


def test_stored_scores_equal_the_scorer_on_the_stored_outputs(tiny_i2v, run_dir):
    instance = generate("maze", 2, 5, canvas=SMALLEST)
    sweep = {
        "name": "strength",
        "intervention": {"kind": "noise_at_step", "steps": [1], "strength": 1.0},
        "over": "strength",
        "values": [0.5, 4.0],
    }
    checked = check_spec(_spec(instance, sweeps=[sweep]), tiny_i2v.info)
    assert checked.spec.task.family == "maze" and checked.spec.image == image_data_url(instance)
    run_experiment(tiny_i2v, checked, run_dir)

    run = stepscope.load_run(run_dir.path)
    assert run.status == "finished"
    members = run.sweep("strength")["members"]
    for name in ["baseline", *members]:
        trajectory = run[name]
        stored = trajectory.record.task_score
        verdict = instance.score(trajectory.video)
        assert trajectory.video.shape == (9, 64, 64, 3)
        assert stored.score == pytest.approx(verdict.score, abs=1e-9)
        assert (stored.passed, stored.reason) == (verdict.passed, verdict.reason)
        expected = candidate_curves(instance, [member[0] for member in trajectory.previews], trajectory.steps)
        kept = trajectory.record.candidates
        # A member resumed from the baseline's state entering step 1 stores (and is measured at) steps 1 and 2.
        assert kept.steps == trajectory.steps == expected.steps == ([0, 1, 2] if name == "baseline" else [1, 2])
        assert (kept.labels, kept.answer, kept.live, kept.winner) == (
            expected.labels,
            expected.answer,
            expected.live,
            expected.winner,
        )
        np.testing.assert_allclose(np.asarray(kept.masses), np.asarray(expected.masses), rtol=0, atol=1e-9)
        # Where each candidate is read, and which of the previews' latent frames: what the explorer draws them over.
        assert (kept.alive, kept.regions.model_dump(mode="json")) == (expected.alive, expected.regions)
    curve = run.sweep("strength")["curve"]
    assert curve["score"] == pytest.approx([run[m].record.task_score.score for m in members], abs=1e-12)
    assert all(s is not None for s in curve["score"])

    # The bench reads the stored verdicts back: the same numbers as scoring the videos again.
    scored = score_run(instance, run_dir.path, stored=True)
    for name in ["baseline", *members]:
        assert scored[name]["score"] == pytest.approx(instance.score(run[name].video).score, abs=1e-9)
        assert scored[name]["curves"]["live"] == run[name].record.candidates.live
    # ... read back, not scored again: a final video replaced by the ground truth changes only a fresh scoring.
    final = next(d for d in run.baseline.record.decodes if d.step == "final")
    truth = instance.ground_truth()
    for i in range(final.frames):
        run.dir.write_image(f"{final.dir}/frame_{i:03d}.jpg", truth[i])
    assert score_run(instance, run_dir.path)["baseline"]["passed"] is True
    assert score_run(instance, run_dir.path, stored=True)["baseline"]["passed"] is run.baseline.record.task_score.passed
    assert run.baseline.record.task_score.passed is False  # tiny-i2v's random weights do not solve the maze


def test_a_run_without_a_task_stores_no_scores(tiny_i2v, run_dir):
    instance = generate("maze", 1, 0, canvas=SMALLEST)
    spec = _spec(instance)
    del spec["task"]
    run_experiment(tiny_i2v, check_spec(spec, tiny_i2v.info), run_dir)
    baseline = stepscope.load_run(run_dir.path).baseline.record
    assert baseline.task_score is None and baseline.candidates is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"task": {"family": "sudoku"}}, "task.family"),
        ({"task": {"family": "maze", "difficulty": 4}}, "task.difficulty"),
        ({"task": {"family": "maze", "seed": -1}}, "task.seed"),
        ({"task": {"family": "maze", "colour": "red"}}, "task.colour"),
        ({"task": {"family": "maze"}, "probes": {"final_decode": False}}, "probes.final_decode"),
        ({"task": {"family": "maze"}, "width": 80}, "task"),
        ({"task": {"family": "maze"}, "height": 32, "width": 32}, "task"),
    ],
)
def test_the_spec_refuses_a_bad_task_naming_the_field(change, field):
    with pytest.raises(SpecError) as err:
        parse_spec({"model": "tiny-i2v", **change})
    assert err.value.field == field
    if field == "task.family":
        assert "maze, pattern, trajectory" in err.value.message
