"""Each family's `candidate_regions` is what its `candidates` reads: a video painted only on one candidate's cells, in
the measured frames, gives that candidate the mass; nothing outside the area and the frames changes any mass; and the
preview frames named in a curve's regions are the ones whose pixels count."""

from __future__ import annotations

import numpy as np
import pytest

from stepscope import run_format as rf
from stepscope.tasks import Canvas, candidate_curves, family_names, generate
from stepscope.tasks.core import AGENT, CELL, FLOOR, TRAIL, conformed_frames, fill_cell

FAMILIES = family_names()
# The colour each family's measure reads as a candidate's presence (docs/tasks.md, "Candidate measures").
PRESENCE = {"maze": AGENT, "trajectory": AGENT, "pattern": TRAIL}
CANVASES = [Canvas(), Canvas(size=96, frames=21)]


def instances(family: str):
    for canvas in CANVASES:
        for seed in range(8):
            yield generate(family, 1 + seed % 3, seed, canvas=canvas)


def cell_mask(canvas: Canvas, cells) -> np.ndarray:
    """(S, S) bool: the pixels of `cells`."""
    mask = np.zeros((canvas.size, canvas.size), dtype=bool)
    for r, c in cells:
        mask[r * CELL : (r + 1) * CELL, c * CELL : (c + 1) * CELL] = True
    return mask


@pytest.mark.parametrize("family", FAMILIES)
def test_painting_one_candidates_cells_gives_it_the_mass(family):
    for task in instances(family):
        regions = task.candidate_regions()
        assert regions.grid == task.canvas.grid and len(regions.cells) == len(task.candidates)
        assert len(regions.anchors) == len(task.candidates)
        assert set(regions.frames) <= set(range(task.canvas.frames)) and regions.frames
        area = set(regions.area)
        for j, cells in enumerate(regions.cells):
            assert cells and set(cells) <= area, (task.seed, j)
            video = np.empty((task.canvas.frames, task.canvas.size, task.canvas.size, 3), dtype=np.uint8)
            video[...] = FLOOR
            for f in regions.frames:
                for r, c in cells:
                    fill_cell(video[f], r, c, PRESENCE[family])
            measure = task.measure_candidates(video)
            assert measure.winner == j and measure.live == 1, (task.seed, j, measure.masses)
            assert measure.masses[j] == pytest.approx(1.0, abs=1e-6)
            assert measure.alive == [k == j for k in range(len(task.candidates))]


@pytest.mark.parametrize("family", FAMILIES)
def test_nothing_outside_the_area_and_the_frames_changes_a_mass(family):
    rng = np.random.default_rng(7)
    for task in instances(family):
        regions = task.candidate_regions()
        shape = (task.canvas.frames, task.canvas.size, task.canvas.size, 3)
        video = rng.integers(0, 256, shape, dtype=np.uint8)
        base = task.measure_candidates(video).masses
        outside = rng.integers(0, 256, shape, dtype=np.uint8)
        read = np.zeros(shape[:3], dtype=bool)
        read[regions.frames] = cell_mask(task.canvas, regions.area)
        elsewhere = np.where(read[..., None], video, outside)
        np.testing.assert_allclose(task.measure_candidates(elsewhere).masses, base, rtol=0, atol=1e-6)
        # And what is read does count: new pixels inside the area, in the measured frames, change the masses.
        inside = np.where(read[..., None], outside, video)
        assert not np.allclose(task.measure_candidates(inside).masses, base, atol=1e-3), task.seed


@pytest.mark.parametrize("family", FAMILIES)
def test_a_curves_measured_frames_are_the_preview_frames_it_reads(family):
    rng = np.random.default_rng(3)
    for task in instances(family):
        latent_frames = (task.canvas.frames - 1) // 4 + 1  # a 4x-temporal preview: one frame per latent frame
        side = task.canvas.grid  # one pixel per cell, as an 8x-spatial linear preview
        preview = rng.integers(0, 256, (latent_frames, side, side, 3), dtype=np.uint8)
        curves = candidate_curves(task, [preview])
        measured = curves.regions["measured_frames"]
        source = conformed_frames(latent_frames, task.canvas)
        assert measured == sorted({int(source[f]) for f in curves.regions["frames"]})
        for f in range(latent_frames):
            changed = preview.copy()
            changed[f] = rng.integers(0, 256, changed[f].shape, dtype=np.uint8)
            moved = not np.allclose(task.measure_candidates(changed).masses, curves.masses[0], atol=1e-6)
            assert moved == (f in measured), (task.seed, f, measured)


def test_regions_are_stored_in_the_manifests_candidates():
    task = generate("maze", 2, 1)
    truth = task.ground_truth()
    curves = candidate_curves(task, [truth, truth], steps=[0, 5])
    record = rf.TaskCandidates(**curves.to_json())
    assert record.regions.cells == [[list(c) for c in cells] for cells in task.candidate_regions().cells]
    assert record.regions.measured_frames == [task.canvas.frames - 1]
    assert record.alive == [[j == task.answer for j in range(len(task.candidates))]] * 2
    # Read back, the curves are the same (a manifest's `candidates`, e.g. in the bench and reproduce).
    assert type(curves).from_record(record).to_json() == curves.to_json()
