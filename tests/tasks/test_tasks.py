"""Every registered task family: determinism, JSON, scorer validation, candidate measures, the picture format."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from stepscope.tasks import Canvas, TaskError, TaskInstance, candidate_curves, corrupt, family_names, generate
from stepscope.tasks.core import CELL, FAMILY_FACTS, PALETTE, Family, fill_cell, get_family, register
from stepscope.tasks.families.maze import agent_index
from stepscope.tasks.families.trajectory import ball_position
from stepscope.tasks.validate import validate_family

FAMILIES = family_names()
N_FAST = 45  # per family (15 per difficulty); `python -m stepscope.tasks.validate --n 1000` runs the full check


def test_the_three_families_are_registered():
    assert {"maze", "trajectory", "pattern"} <= set(FAMILIES)


@pytest.mark.parametrize("family", FAMILIES)
def test_instances_are_deterministic_and_json_round_trips(family):
    a, b = generate(family, 2, 11), generate(family, 2, 11)
    assert a == b
    assert np.array_equal(a.ground_truth(), b.ground_truth())
    back = TaskInstance.from_json(json.loads(a.dumps()))
    assert back == a
    assert np.array_equal(back.ground_truth(), a.ground_truth())
    others = {generate(family, 2, s).dumps() for s in range(12, 20)}
    assert len(others) >= 6  # other seeds give other instances


@pytest.mark.parametrize("family", FAMILIES)
def test_instance_pictures_follow_the_format(family):
    task = generate(family, 1, 3)
    video = task.ground_truth()
    assert video.shape == (17, 64, 64, 3) and video.dtype == np.uint8
    assert np.array_equal(task.first_frame, video[0])
    colours = {tuple(int(x) for x in c) for c in video.reshape(-1, 3)}
    assert colours <= set(PALETTE.values())  # flat palette colours only
    assert task.prompt and task.family.split("_")[0] in task.prompt.lower()
    assert 0 <= task.answer < len(task.candidates) and len(task.candidates) >= 2


@pytest.mark.parametrize("family", FAMILIES)
def test_ground_truth_passes_and_corruptions_fail(family):
    result = validate_family(family, N_FAST)
    assert result["ground_truth"] >= 0.99, result
    assert result["candidates"] >= 0.99, result
    for name in corrupt.MUST_PASS:
        assert result[f"{name}_passes"] >= 0.99, (name, result)
    for name in corrupt.MUST_FAIL:
        assert result[f"{name}_fails"] >= 0.99, (name, result)


@pytest.mark.parametrize("family", FAMILIES)
def test_scores_are_in_range_and_diagnose_every_frame(family):
    task = generate(family, 3, 5)
    truth = task.ground_truth()
    good = task.score(truth)
    assert good.passed and good.score == pytest.approx(1.0)
    assert len(good.frames) == 17 and [f["frame"] for f in good.frames] == list(range(17))
    bad = task.score(corrupt.wrong(task))
    assert not bad.passed and 0.0 <= bad.score < 1.0 and bad.reason
    blank = task.score(corrupt.blank(truth))
    assert not blank.passed and blank.score == 0.0


@pytest.mark.parametrize("family", FAMILIES)
def test_scoring_resamples_other_sizes_and_frame_counts(family):
    task = generate(family, 2, 8)
    truth = task.ground_truth()
    bigger = np.repeat(np.repeat(truth, 2, axis=1), 2, axis=2)  # 128×128
    assert task.score(bigger).passed
    # A 5-frame estimate (latent frames) is stretched in time; candidates still read it.
    short = truth[np.round(np.linspace(0, 16, 5)).astype(int)]
    measure = task.measure_candidates(short)
    assert measure.winner == task.answer


@pytest.mark.parametrize("family", FAMILIES)
def test_candidates_read_a_latent_resolution_preview(family):
    # What a linear x̂₀ preview looks like: one pixel per 8×8 cell, one frame per latent frame.
    for seed in range(15):
        task = generate(family, 1 + seed % 3, seed)
        truth = task.ground_truth().astype(np.float32)
        preview = truth.reshape(17, 8, 8, 8, 8, 3).mean(axis=(2, 4))[[0, 4, 8, 12, 16]].astype(np.uint8)
        measure = task.measure_candidates(preview)
        assert measure.winner == task.answer and measure.live == 1, (seed, measure)
        assert not task.measure_candidates(np.full_like(preview, 128)).live


@pytest.mark.parametrize("family", FAMILIES)
def test_a_larger_canvas_and_more_frames(family):
    canvas = Canvas(size=96, frames=21)
    for seed in range(6):
        task = generate(family, 1 + seed % 3, seed, canvas=canvas)
        truth = task.ground_truth()
        assert truth.shape == (21, 96, 96, 3)
        assert task.score(truth).passed
        assert not task.score(corrupt.wrong(task)).passed


@pytest.mark.parametrize("family", FAMILIES)
def test_candidate_curves_show_exploration_then_commitment(family):
    task = generate(family, 2, 4)
    truth = task.ground_truth()
    wrong = task.candidate_video((task.answer + 1) % len(task.candidates))
    superposed = ((truth.astype(np.float32) + wrong) / 2).astype(np.uint8)
    floor = corrupt.blank(truth)
    curves = candidate_curves(task, [floor, superposed, truth, truth], steps=[0, 3, 6, 9])
    assert curves.steps == [0, 3, 6, 9]
    assert curves.live[0] == 0 and curves.winner[0] is None
    assert curves.live[1] == 2  # both answers drawn at half strength
    assert curves.masses[1][task.answer] == pytest.approx(0.5, abs=0.15)
    assert curves.live[2] == 1 and curves.winner[2] == task.answer
    assert curves.explored_then_committed()
    assert not candidate_curves(task, [floor, truth, truth, truth]).explored_then_committed()
    assert json.loads(json.dumps(curves.to_json()))["live"] == curves.live


@pytest.mark.parametrize("family", FAMILIES)
def test_candidate_videos_measure_as_their_candidate(family):
    task = generate(family, 3, 2)
    assert np.array_equal(task.candidate_video(task.answer), task.ground_truth())
    for index in range(len(task.candidates)):
        measure = task.measure_candidates(task.candidate_video(index))
        assert measure.winner == index and measure.live == 1, (index, measure)
        assert task.score(task.candidate_video(index)).passed == (index == task.answer)


def _painted(video: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """(T, H, W) bool: the pixels painted in one of the palette colours `names`."""
    return np.any([np.all(video == np.asarray(PALETTE[n], dtype=np.uint8), axis=-1) for n in names], axis=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_states_its_facts_and_they_hold(family):
    # Training, reproduce and the bench read these from the family (get_family(name).<fact>), never from their own
    # tables: each is stated by the family class with its type, and true of the family's instances.
    impl = get_family(family)
    for fact, kind in FAMILY_FACTS.items():
        assert isinstance(getattr(type(impl), fact), kind) and getattr(type(impl), fact), fact
    assert impl.name == family
    answers: dict[int, set[str]] = {1: set(), 2: set(), 3: set()}
    for seed in range(30):
        task = generate(family, 1 + seed % 3, seed)
        assert task.prompt == impl.prompt  # one prompt a family: training embeds each family's once
        answers[task.difficulty].add(json.dumps(task.params[impl.answer_param]))
        if seed >= 6:
            continue
        # The foreground colours paint the objects that carry the answer: in every frame of the ground truth, and
        # elsewhere in a video that gives another answer.
        truth = task.ground_truth()
        assert _painted(truth, impl.foreground).any(axis=(1, 2)).all()
        other = task.candidate_video((task.answer + 1) % len(task.candidates))
        assert not np.array_equal(_painted(other, impl.foreground), _painted(truth, impl.foreground))
    # Instances of one difficulty differ in the answer parameter: the reproduction's swap partners are drawn so.
    assert all(len(values) >= 2 for values in answers.values()), answers


def test_register_refuses_a_family_that_lacks_a_fact():
    class Lacking(Family):  # every fact but answer_param
        name = "lacking-a-fact"
        description = "a test family"
        prompt = "Lacking: nothing happens."
        foreground = ("agent",)

    before = family_names()
    with pytest.raises(TypeError, match="answer_param"):
        register(Lacking)
    Lacking.answer_param = "turns"
    Lacking.foreground = ("agent", "floor")  # the floor carries no answer
    with pytest.raises(TypeError, match="foreground"):
        register(Lacking)
    assert family_names() == before  # nothing registered


def test_bad_requests_name_the_field():
    with pytest.raises(TaskError) as err:
        generate("sudoku", 1, 0)
    assert err.value.field == "family"
    with pytest.raises(TaskError) as err:
        generate("maze", 4, 0)
    assert err.value.field == "difficulty"
    with pytest.raises(TaskError) as err:
        generate("maze", 1, -1)
    assert err.value.field == "seed"
    with pytest.raises(TaskError) as err:
        Canvas(size=72)
    assert err.value.field == "canvas.size"
    with pytest.raises(TaskError) as err:
        Canvas(frames=18)
    assert err.value.field == "canvas.frames"
    with pytest.raises(TaskError) as err:
        generate("maze", 1, 0).score(np.zeros((17, 64, 64), dtype=np.uint8))
    assert err.value.field == "video"


def test_cells_are_eight_pixels():
    assert CELL == 8 and Canvas().grid == 8 and Canvas(size=96).grid == 12


def test_tasks_do_not_import_the_model_stack():
    # The API and a notebook without torch can generate and score instances.
    code = (
        "import sys, stepscope.tasks; stepscope.tasks.generate('maze', 1, 0).ground_truth(); "
        "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'cv2') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


# -- every frame is judged -----------------------------------------------------------------------------------------
def _wall_cells(task) -> list[tuple[int, int]]:
    return [(int(r), int(c)) for r, c in zip(*np.nonzero(~np.asarray(task.params["open"], dtype=bool)), strict=True)]


def _maze_second_agent_on_a_wall(task, video, frame, rng):
    """A wall cell painted the agent's colour: two agent cells, so the agent is not located in that frame."""
    fill_cell(video[frame], *_wall_cells(task)[rng.integers(len(_wall_cells(task)))], PALETTE["agent"])


def _maze_trail_on_a_wall_agent_missing(task, video, frame, rng):
    """The agent left out of a frame (its cell floor) and a wall cell painted the trail's colour."""
    route = [tuple(c) for c in task.params["route"]]
    fill_cell(video[frame], *route[agent_index(frame, task.canvas.frames, len(route) - 1)], PALETTE["floor"])
    fill_cell(video[frame], *_wall_cells(task)[rng.integers(len(_wall_cells(task)))], PALETTE["trail"])


def _trajectory_second_ball_in_the_floor(task, video, frame, rng):
    """A second ball painted into the floor, two cells or more from the ball: two blobs, the ball not located."""
    size = task.canvas.size
    ball_x, _ = ball_position(task.params, task.canvas, frame)
    x = int(rng.choice([x for x in range(CELL, size - 2 * CELL) if abs(x - ball_x) >= 2 * CELL]))
    video[frame, size - CELL :, x : x + CELL] = PALETTE["agent"]


def _trajectory_ball_missing_streak_in_a_wall(task, video, frame, rng):
    """The ball left out of a frame (only the scene there) and its colour streaked down inside a side wall: too
    long to be one ball, so nothing is located in that frame."""
    video[frame] = video[0]
    video[frame, : 2 * CELL] = task.ground_truth()[-1, : 2 * CELL]  # the top rows without ball or ghost
    x = 1 if rng.random() < 0.5 else task.canvas.size - 5
    video[frame, 2 * CELL : task.canvas.size - 2 * CELL, x : x + 4] = PALETTE["agent"]


FRAME_RULE_BREAKS = {
    "maze": [_maze_second_agent_on_a_wall, _maze_trail_on_a_wall_agent_missing],
    "trajectory": [_trajectory_second_ball_in_the_floor, _trajectory_ball_missing_streak_in_a_wall],
}


@pytest.mark.parametrize(
    "family, breaker",
    [(family, breaker) for family, breakers in FRAME_RULE_BREAKS.items() for breaker in breakers],
    ids=lambda v: v if isinstance(v, str) else v.__name__.lstrip("_"),
)
def test_a_frame_rule_broken_where_the_object_is_not_located_fails(family, breaker):
    # The object is not located in the broken frame, and the rule is judged there all the same.
    rng = np.random.default_rng(0)
    for seed in range(30):
        task = generate(family, 1 + seed % 3, seed)
        video = task.ground_truth().copy()
        frame = int(rng.integers(1, task.canvas.frames - 1))
        breaker(task, video, frame, rng)
        result = task.score(video)
        info = result.frames[frame]
        assert info.get("agent", info.get("ball")) is None, (seed, frame, info)  # not located ...
        assert "illegal" in info and not result.passed, (seed, frame, result.reason)  # ... and judged
        assert result.reason.startswith(f"illegal frame {frame}:" if family == "maze" else f"frame {frame}:")
        assert result.score == pytest.approx(0.5 * (task.canvas.frames - 1) / task.canvas.frames + 0.5)


@pytest.mark.parametrize("family", FAMILIES)
def test_an_unlocated_frame_counts_against_the_video_as_the_docs_say(family):
    # docs/tasks.md: a missed frame is never legal (score − 0.5/T); one in 17 is tolerated, two are not.
    task = generate(family, 2, 3)
    truth = task.ground_truth()
    frames = task.canvas.frames
    one = truth.copy()
    one[8] = 255  # all floor: no agent, ball or shape, and no rule broken
    result = task.score(one)
    assert result.passed and result.frames[8].get("illegal") is None
    assert result.score == pytest.approx(1 - 0.5 / frames)
    two = one.copy()
    two[9] = 255
    result = task.score(two)
    assert not result.passed and "15/17" in result.reason
    assert result.score == pytest.approx(1 - 1.0 / frames)
