"""A task-scored run in the explorer: each trajectory's task score and candidate curve, from its manifest."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import open_job, screenshot

pytestmark = pytest.mark.browser

# The smallest canvas a task is scored on (square, 64–256 px, 9–81 frames), a baseline and one variant.
TASK_SPEC = {
    "model": "tiny",
    "prompt": "a maze, solved",
    "steps": 3,
    "height": 64,
    "width": 64,
    "frames": 9,
    "task": {"family": "maze", "difficulty": 1, "seed": 0},
    "variants": [{"name": "noise1", "interventions": [{"kind": "noise_at_step", "steps": [1], "strength": 0.5}]}],
}


def score_text(task_score: dict) -> str:
    verdict = "pass" if task_score["passed"] else "fail"
    reason = f" · {task_score['reason']}" if task_score["reason"] else ""
    return f"{verdict} · score {task_score['score']:.2f}{reason}"


def test_task_score_and_candidate_curve_of_each_trajectory(page, service, client):
    job = client.submit(TASK_SPEC)
    record = client.wait(job["id"], timeout=120)
    assert record["status"] == "finished", record
    trajectories = client.manifest(job["id"])["trajectories"]
    baseline, variant = trajectories["baseline"], trajectories["noise1"]
    candidates = baseline["candidates"]

    open_job(page, service, job["id"])
    badge = page.locator("#task-score .task-score")
    expect(badge).to_have_text(score_text(baseline["task_score"]), use_inner_text=True)
    expect(badge).to_have_attribute("data-passed", str(baseline["task_score"]["passed"]).lower())
    # The chart plots what the manifest says: live candidates and each candidate's mass at each captured step.
    live_dots = "#candidate-chart g.points[data-series='live'] circle"
    expect(page.locator(live_dots)).to_have_count(len(candidates["steps"]))  # drawn with the view, not before
    live = page.eval_on_selector_all(
        live_dots,
        "els => els.map(e => [Number(e.dataset.step), Number(e.dataset.value)])",
    )
    assert live == [list(p) for p in zip(candidates["steps"], candidates["live"], strict=True)]
    answer = candidates["labels"][candidates["answer"]]
    answer_dots = f"#candidate-chart g.points[data-series='{answer} (answer)'] circle"
    answer_mass = page.eval_on_selector_all(answer_dots, "els => els.map(e => Number(e.dataset.value))")
    assert answer_mass == pytest.approx([m[candidates["answer"]] for m in candidates["masses"]])
    # Beside the curve, the chance level the manifest stores: 1 / the number of candidates.
    assert candidates["chance"] == pytest.approx(1 / len(candidates["labels"]))
    with_winner = sum(w is not None for w in candidates["winner"])
    answer_wins = sum(w == candidates["answer"] for w in candidates["winner"])
    here = (
        f"here the winner is the answer at {answer_wins} of the {with_winner} step(s) with a winner"
        if with_winner
        else "here no step has a live winner"
    )
    assert page.locator("#candidate-chance").inner_text() == (
        f"chance {candidates['chance']:.3f} (1 of {len(candidates['labels'])} candidates): a winner picked at random "
        f"is the answer this often · {here}"
    )
    # The cursor follows the global step: the last one on opening, then one back with the arrow key.
    last = max(s["index"] for s in baseline["steps"])
    cursor_at = "s => document.getElementById('candidate-chart').dataset.cursor === String(s)"
    page.wait_for_function(cursor_at, arg=last)
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.keyboard.press("ArrowLeft")
    page.wait_for_function(cursor_at, arg=last - 1)
    page.locator("#task-panel").scroll_into_view_if_needed()
    screenshot(page, "task_score")

    # Compare: both sides' scores.
    page.evaluate(f"location.hash = '#/jobs/{job['id']}/compare?left=baseline&right=noise1'")
    scores = page.locator("#compare-scores .task-score")
    expected = [f"baseline: {score_text(baseline['task_score'])}", f"noise1: {score_text(variant['task_score'])}"]
    expect(scores).to_have_text(expected, use_inner_text=True)
