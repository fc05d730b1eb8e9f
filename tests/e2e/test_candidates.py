"""Candidates on x̂₀: in a task-scored run each candidate is drawn over the preview where the task's measure reads it
(the manifest's regions, which are the family's own), its mass at the step in the list beside it, faint outside the
measured latent frames; and a strip shows every candidate's mass, live flag and winner across the steps."""

from __future__ import annotations

import numpy as np
import pytest

from stepscope.tasks import Canvas, candidate_curves, generate
from tests.e2e.helpers import open_job, screenshot

pytestmark = pytest.mark.browser

CANVAS = Canvas(size=64, frames=9)  # the smallest canvas a task is scored on: 3 latent frames, 8×8 cells


def task_spec(family: str) -> dict:
    return {
        "model": "tiny",
        "prompt": f"a {family} task",
        "steps": 3,
        "height": CANVAS.size,
        "width": CANVAS.size,
        "frames": CANVAS.frames,
        "task": {"family": family, "difficulty": 2, "seed": 2},
    }


OVERLAY_PIXELS = """() => {
  const c = document.getElementById('candidate-overlay');
  const g = c.getContext('2d');
  return {width: c.width, height: c.height, data: Array.from(g.getImageData(0, 0, c.width, c.height).data)};
}"""
STRIP_PIXELS = """(points) => {
  const c = document.getElementById('candidate-strip');
  const g = c.getContext('2d');
  const dpr = window.devicePixelRatio || 1;
  return points.map(([x, y]) => Array.from(g.getImageData(Math.round(x * dpr), Math.round(y * dpr), 1, 1).data));
}"""
SWATCHES = """() => [...document.querySelectorAll('#candidate-list li')].map((li) => {
  const m = getComputedStyle(li.querySelector('.swatch')).backgroundColor.match(/\\d+/g).map(Number);
  return {index: Number(li.dataset.index), rgb: m.slice(0, 3), mass: Number(li.dataset.mass), alive: li.dataset.alive};
})"""


FAMILIES = ["maze", "trajectory", "pattern"]


@pytest.fixture(scope="module")
def task_runs(client) -> dict[str, str]:
    """One finished run of each family (queued together: the worker runs them back to back)."""
    jobs = {family: client.submit(task_spec(family))["id"] for family in FAMILIES}
    for job_id in jobs.values():
        assert client.wait(job_id, timeout=180)["status"] == "finished"
    return jobs


@pytest.mark.parametrize("family", FAMILIES)
def test_each_candidate_is_drawn_where_the_measure_reads_it(page, service, client, task_runs, family):
    job = {"id": task_runs[family]}
    candidates = client.manifest(job["id"])["trajectories"]["baseline"]["candidates"]
    regions = candidates["regions"]
    # The manifest's regions are the family's own, for this instance; the measured latent frame is the one whose
    # canvas frames the measure reads (9 frames from 3 latent frames: nearest in time).
    instance = generate(family, 2, 2, canvas=CANVAS)
    own = instance.candidate_regions()
    assert regions["cells"] == [[list(c) for c in cells] for cells in own.cells]
    assert regions["anchors"] == [list(c) for c in own.anchors] and regions["frames"] == own.frames
    assert regions["measured_frames"] == candidate_curves(instance, [np.zeros((3, 8, 8, 3))]).regions["measured_frames"]
    measured = regions["measured_frames"][-1]
    step = candidates["steps"][-1]

    open_job(page, service, job["id"], f"trajectory?step={step}&frame={measured}")
    page.wait_for_selector(f"#candidate-overlay[data-drawn='true'][data-measured='true'][data-step='{step}']")
    # The list: every candidate with its mass and live flag at this step, as the manifest has them.
    listed = page.evaluate(SWATCHES)
    i = candidates["steps"].index(step)
    assert [c["index"] for c in listed] == list(range(len(candidates["labels"])))
    assert [c["mass"] for c in listed] == pytest.approx(candidates["masses"][i], abs=1e-12)
    assert [c["alive"] for c in listed] == [str(a).lower() for a in candidates["alive"][i]]

    # The overlay: every pixel drawn in a candidate's colour lies on that candidate's cells (or its label at its anchor
    # cell), and every candidate has such pixels on its own cells or its label.
    shot = page.evaluate(OVERLAY_PIXELS)
    pixels = np.asarray(shot["data"], dtype=np.int32).reshape(shot["height"], shot["width"], 4)
    cell = shot["width"] / regions["grid"]
    assert shot["width"] == shot["height"] and cell == int(cell), shot["width"]  # whole pixels a cell
    cell = int(cell)

    def mask(cells, grow: int = 0) -> np.ndarray:
        out = np.zeros(pixels.shape[:2], dtype=bool)
        for r, c in cells:
            out[max(0, r * cell - grow) : (r + 1) * cell + grow, max(0, c * cell - grow) : (c + 1) * cell + grow] = True
        return out

    by_colour: dict[tuple, list[int]] = {}
    for c in listed:
        by_colour.setdefault(tuple(c["rgb"]), []).append(c["index"])
    for rgb, members in by_colour.items():
        painted = (np.abs(pixels[..., :3] - np.asarray(rgb)).max(axis=-1) <= 2) & (pixels[..., 3] >= 128)
        allowed = mask([c for j in members for c in regions["cells"][j]])
        allowed |= mask([regions["anchors"][j] for j in members], grow=4)  # a label may be a little wider than its cell
        stray = np.argwhere(painted & ~allowed)
        assert len(stray) == 0, f"colour {rgb} drawn outside candidates {members}' cells at {stray[:5].tolist()}"
        for j in members:
            on_own = painted & (mask(regions["cells"][j]) | mask([regions["anchors"][j]], grow=4))
            assert on_own.sum() > 0, f"candidate {j} ({candidates['labels'][j]}) is not drawn"
    # Outside every candidate's cells and labels nothing is drawn at all.
    everywhere = mask([c for cells in regions["cells"] for c in cells]) | mask(regions["anchors"], grow=4)
    assert pixels[~everywhere][:, 3].max(initial=0) == 0
    page.locator("#task-panel").scroll_into_view_if_needed()
    screenshot(page, f"candidates_{family}")

    # The strip: one row per candidate, one column per captured step, shaded by mass (0 → the cell's ground, the
    # run's largest mass → the candidate's colour).
    strip = page.locator("#candidate-strip")
    assert int(strip.get_attribute("data-rows")) == len(candidates["labels"])
    assert int(strip.get_attribute("data-steps")) == len(candidates["steps"])
    geo = {k: float(strip.get_attribute(f"data-{k}")) for k in ("label-w", "cw", "row-h", "top", "max-mass")}
    points, expected = [], []
    ground = np.array([0x16, 0x1B, 0x23])
    for si in range(len(candidates["steps"])):
        for j, c in enumerate(listed):
            x = geo["label-w"] + si * geo["cw"] + 0.3 * geo["cw"]
            y = geo["top"] + j * geo["row-h"] + geo["row-h"] / 2
            points.append([x, y])
            a = min(1.0, candidates["masses"][si][j] / geo["max-mass"])
            expected.append(ground * (1 - a) + np.asarray(c["rgb"]) * a)
    shown = np.asarray(page.evaluate(STRIP_PIXELS, points))[:, :3]
    np.testing.assert_allclose(shown, np.asarray(expected), atol=3)
    # A click on a column goes to that step; the strip's cursor and caption follow.
    first = candidates["steps"][0]
    box = strip.bounding_box()
    strip.click(position={"x": geo["label-w"] + 0.5 * geo["cw"], "y": geo["top"] + 2}, force=True)
    page.wait_for_function(f"() => document.querySelector('.scrubber').dataset.step === '{first}'")
    page.wait_for_selector("#candidate-strip[data-cursor='0']")
    assert page.inner_text("#candidate-strip-caption").startswith(f"step {first}: ")
    assert box["width"] > 0


def test_outside_the_measured_frames_the_candidates_are_faint_and_a_button_goes_there(page, service, client, task_runs):
    job = {"id": task_runs["maze"]}
    regions = client.manifest(job["id"])["trajectories"]["baseline"]["candidates"]["regions"]
    measured = regions["measured_frames"]
    other = next(f for f in range(3) if f not in measured)
    open_job(page, service, job["id"], f"trajectory?frame={other}")
    page.wait_for_selector(f"#candidate-overlay[data-drawn='true'][data-measured='false'][data-frame='{other}']")
    faint = page.evaluate(OVERLAY_PIXELS)
    assert max(faint["data"][3::4]) < 200  # drawn at 45% opacity: no full-strength pixel
    assert f"latent frame {measured[-1]}" in page.inner_text("#candidate-note")
    page.click("#measured-frame")
    page.wait_for_selector(f"#candidate-overlay[data-measured='true'][data-frame='{measured[-1]}']")
    assert page.is_hidden("#measured-frame")
    # Off, the overlay is gone; the toggle brings it back.
    page.uncheck("#candidate-toggle")
    page.wait_for_selector("#candidate-overlay[data-drawn='false']", state="attached")
    page.check("#candidate-toggle")
    page.wait_for_selector("#candidate-overlay[data-drawn='true']")
