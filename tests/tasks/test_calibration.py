"""The candidate measures cannot favour the answer: they read every candidate alike, and on videos that carry no
answer (uniform and grey noise, at full and at preview resolution) the winner is the answer at chance rate."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from stepscope.stats import wilson_interval
from stepscope.tasks import candidate_curves, family_names, generate
from stepscope.tasks.calibration import (
    CONDITIONS,
    POOLED,
    TOLERANCE,
    answer_free_video,
    calibrate_family,
    judge,
    main,
    preview_of,
    video_shares,
)
from stepscope.tasks.curves import answer_win_shares, chance_level
from stepscope.tasks.families.maze import path_to, tree_paths

FAMILIES = family_names()
N_CALIBRATION = 200  # instances (one video a condition) per family; the benchmark runs 3,000 (docs/tasks.md)
CONFIDENCE = 0.999  # the chance level must lie inside the shares' intervals at this confidence


def with_answer(task, j: int):
    """The same instance with candidate j as its answer: what the generator would have drawn had j been right."""
    p = dict(task.params)
    if task.family == "maze":
        parent = tree_paths(np.asarray(p["open"], dtype=bool), tuple(p["start"]))
        p["goal"] = list(p["ends"][j])
        p["route"] = [list(c) for c in path_to(parent, tuple(p["ends"][j]))]
    elif task.family == "trajectory":
        p["landing_column"] = p["slots"][j]
    elif task.family == "pattern":
        p["turns"] = j
    else:
        pytest.fail(f"no twin rule for {task.family}")
    return dataclasses.replace(task, params=p, answer=j)


@pytest.mark.parametrize("family", FAMILIES)
def test_masses_do_not_depend_on_which_candidate_is_the_answer(family):
    # Exact: the same video measured with each candidate as the answer gives the same masses (only labels move).
    for seed in range(6):
        task = generate(family, 1 + seed % 3, seed)
        videos = [answer_free_video(c, task) for c in CONDITIONS] + [task.ground_truth(), task.candidate_video(0)]
        for video in videos:
            base = task.measure_candidates(video)
            for j in range(len(task.candidates)):
                twin = with_answer(task, j).measure_candidates(video)
                assert twin.masses == base.masses and twin.winner == base.winner, (seed, j)
                assert twin.answer == j


@pytest.mark.parametrize("family", FAMILIES)
def test_on_answer_free_videos_the_winner_is_the_answer_at_chance(family):
    result = calibrate_family(family, N_CALIBRATION)
    assert set(result["conditions"]) == {*CONDITIONS, POOLED}
    for condition, s in result["conditions"].items():
        n, wins = s["n"], round(s["answer_wins"] * s["n"])
        assert n == N_CALIBRATION * (len(CONDITIONS) if condition == POOLED else 1)
        lo, hi = wilson_interval(wins, n, CONFIDENCE)
        assert lo <= s["chance"] <= hi, (condition, s)
        if s["with_winner"] >= 30:  # fewer: the share among them says little either way
            lo, hi = wilson_interval(wins, s["with_winner"], CONFIDENCE)
            assert lo <= s["chance_when_winner"] <= hi, (condition, s)
    # The same measure still reads real signal: the ground truth has one live candidate, the answer.
    assert result["ground_truth_one_live_answer"] == {"full": 1.0, "preview": 1.0}


def test_answer_win_shares_against_a_hand_count():
    shares = answer_win_shares([0, None, 2, 1], answers=[0, 0, 1, 1], counts=[2, 3, 4, 4])
    assert shares["n"] == 4 and shares["with_winner"] == 3
    assert shares["answer_wins"] == pytest.approx(2 / 4)
    assert shares["chance"] == pytest.approx((1 / 2 + 0 + 1 / 4 + 1 / 4) / 4)
    assert shares["answer_wins_when_winner"] == pytest.approx(2 / 3)
    assert shares["chance_when_winner"] == pytest.approx((1 / 2 + 1 / 4 + 1 / 4) / 3)
    assert shares["answer_wins_interval"] == pytest.approx(wilson_interval(2, 4))
    none = answer_win_shares([None, None], [0, 1], [3, 3])
    assert none["answer_wins"] == 0.0 and none["chance"] == 0.0 and none["chance_when_winner"] is None
    with pytest.raises(ValueError, match="equal non-zero lengths"):
        answer_win_shares([0], [0, 1], [2, 2])
    assert chance_level(4) == 0.25
    with pytest.raises(ValueError, match="candidate_count"):
        chance_level(0)


def test_judging_a_share_against_chance():
    near = {
        "answer_wins": 0.12,
        "chance": 0.11,
        "with_winner": 400,
        "answer_wins_when_winner": 0.13,
        "chance_when_winner": 0.11,
    }
    assert judge(near) == {"of_all": True, "when_winner": True, "ok": True}
    far = {**near, "answer_wins_when_winner": 0.9}
    assert judge(far) == {"of_all": True, "when_winner": False, "ok": False}
    few = {**far, "with_winner": 20}  # too few winners to resolve ±0.05: judged of all only
    assert judge(few) == {"of_all": True, "when_winner": None, "ok": True}
    assert not judge({**near, "answer_wins": near["chance"] + TOLERANCE + 0.01})["ok"]


def test_answer_free_videos_are_what_the_docs_say():
    task = generate("maze", 1, 0)
    full, preview = answer_free_video("uniform_full", task), answer_free_video("grey_preview", task)
    assert full.shape == (17, 64, 64, 3) and preview.shape == (5, 8, 8, 3)
    assert np.array_equal(full, answer_free_video("uniform_full", task))  # the same noise for the same instance
    assert not np.array_equal(full, answer_free_video("uniform_full", generate("maze", 1, 1)))
    grey = answer_free_video("grey_full", task).astype(np.float64) / 255
    assert abs(grey.mean() - 0.5) < 0.01 and 0.25 < grey.std() < 0.3  # σ 0.3 before clipping to [0, 1]
    assert preview_of(task.ground_truth()).shape == (5, 8, 8, 3)


def test_the_ground_truth_previews_read_as_the_answer_in_curves():
    # The curves of a trajectory that converges on the ground truth: chance beside them is 1 / K.
    task = generate("maze", 2, 4)
    truth = task.ground_truth()
    curves = candidate_curves(task, [answer_free_video("uniform_preview", task), preview_of(truth)])
    assert curves.winner[-1] == task.answer and curves.live[-1] == 1
    assert curves.chance == pytest.approx(1 / len(task.candidates))
    assert curves.to_json()["chance"] == curves.chance


def test_the_command_line_exits_nonzero_only_when_a_share_is_off_chance(capsys):
    assert main(["--n", "40", "--families", "trajectory"]) == 0
    out = capsys.readouterr().out
    assert "| trajectory | uniform_full | 40 |" in out and "ground truth gives one live candidate" in out


def test_a_measure_that_favours_the_answer_is_caught(monkeypatch, capsys):
    from stepscope.tasks.core import get_family, measure_from_masses

    family = get_family("trajectory")

    def favours_the_answer(instance, video):  # what the old maze measure did, in the extreme
        masses = [0.9 if j == instance.answer else 0.1 for j in range(len(instance.candidates))]
        return measure_from_masses(instance.candidates, masses, instance.answer)

    monkeypatch.setattr(family, "candidates", favours_the_answer)
    assert main(["--n", "40", "--families", "trajectory"]) == 1
    assert "**no**" in capsys.readouterr().out


def test_video_shares_pool_each_source_per_family():
    # What stepscope.bench.calibrate_bench hands the suite for a stored bench: each instance with its videos by source.
    tasks = [generate(family, 1, 3) for family in FAMILIES]
    videos = []
    for task in tasks:
        other = task.candidate_video((task.answer + 1) % len(task.candidates))
        videos.append((task, {"truth": [task.ground_truth()], "mixed": [other, task.ground_truth()]}))
    shares = video_shares(iter(videos))
    assert set(shares) == set(FAMILIES)
    for task in tasks:
        truth, mixed = shares[task.family]["truth"], shares[task.family]["mixed"]
        assert truth["n"] == 1 and truth["answer_wins"] == 1.0
        assert mixed["n"] == 2 and mixed["answer_wins"] == 0.5
        assert mixed["chance"] == pytest.approx(1 / len(task.candidates))  # both have a winner
