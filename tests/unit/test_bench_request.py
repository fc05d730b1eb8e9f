"""The bench's request (what `stepscope bench` and POST /api/bench run) and its summary, without a model."""

from __future__ import annotations

import pytest

from stepscope.bench import MAX_N, MAX_RUNS, BenchRequest, check_request, parse_bench_request, summarize, table
from stepscope.jobs import bench_timeout
from stepscope.models import PRESETS
from stepscope.spec import MAX_TASK_SEED, SpecError

NOISE = {"name": "noise1", "interventions": [{"kind": "noise_at_step", "steps": [1], "strength": 1.0}]}


def test_defaults_and_a_json_round_trip():
    request = parse_bench_request({})
    assert (request.model, request.tasks, request.n, request.curves) == (
        "tiny-i2v",
        ["maze", "pattern", "trajectory"],
        10,
        "preview",
    )
    assert (request.size, request.frames, request.difficulty, request.first_seed) == (64, 17, None, 0)
    full = parse_bench_request({"tasks": ["pattern"], "n": 3, "variants": [NOISE], "steps": 6, "difficulty": 2})
    assert parse_bench_request(full.to_json()) == full
    assert full.to_json()["variants"][0]["interventions"][0]["strength"] == 1.0
    assert (full.instance_count, full.run_count) == (3, 6)


@pytest.mark.parametrize(
    ("body", "accepted"),
    [
        ({"n": MAX_N, "tasks": ["maze"]}, True),
        ({"n": MAX_N + 1, "tasks": ["maze"]}, False),
        # 500 × 2 families × (baseline + 1 variant) = 2,000 runs: the limit itself
        ({"n": MAX_N, "tasks": ["maze", "pattern"], "variants": [NOISE]}, True),
        ({"n": MAX_N, "tasks": ["maze", "pattern", "trajectory"], "variants": [NOISE]}, False),
        ({"n": 2, "first_seed": MAX_TASK_SEED - 1}, True),
        ({"n": 3, "first_seed": MAX_TASK_SEED - 1}, False),
    ],
)
def test_the_limits_hold_at_their_edges(body, accepted):
    if accepted:
        assert parse_bench_request(body).run_count <= MAX_RUNS
    else:
        with pytest.raises(SpecError) as refused:
            parse_bench_request(body)
        assert refused.value.field in ("n", "first_seed")


def test_steps_default_to_the_presets():
    assert parse_bench_request({"model": "tiny-i2v"}).resolved_steps() == PRESETS["tiny-i2v"].defaults["steps"] == 20
    assert parse_bench_request({"model": "wan2.2-i2v-a14b"}).resolved_steps() == 50
    assert parse_bench_request({"model": "some/local-model"}).resolved_steps() == 20
    assert parse_bench_request({"model": "wan2.2-i2v-a14b", "steps": 7}).resolved_steps() == 7


def test_model_checks_name_the_request_field():
    check_request(parse_bench_request({"model": "tiny-i2v", "variants": [NOISE]}), PRESETS["tiny-i2v"].info)
    with pytest.raises(SpecError) as refused:  # 80 px: a valid canvas, but the 5B model needs multiples of 32
        check_request(parse_bench_request({"model": "wan2.2-ti2v-5b", "size": 80}), PRESETS["wan2.2-ti2v-5b"].info)
    assert refused.value.field == "size" and "multiple of 32" in str(refused.value)
    late = {**NOISE, "interventions": [{"kind": "noise_at_step", "steps": [3], "strength": 1.0}]}
    with pytest.raises(SpecError) as refused:
        check_request(parse_bench_request({"steps": 3, "variants": [late]}), PRESETS["tiny-i2v"].info)
    assert refused.value.field == "variants.0.interventions.0.steps"


def row(family: str, seed: int, passed: dict[str, bool], score: dict[str, float], winners: dict[str, list]) -> dict:
    """One instance's record as run_bench writes it (answer 1 of 2 candidates, two steps)."""
    return {
        "family": family,
        "seed": seed,
        "trajectories": {
            name: {
                "passed": passed[name],
                "score": score[name],
                "explored_then_committed": winners[name] == [None, 1],
                "curves": {"steps": [0, 1], "labels": ["a", "b"], "live": [0, 1], "winner": winners[name], "answer": 1},
            }
            for name in passed
        },
    }


def test_the_summary_of_mixed_outcomes():
    rows = [
        row(
            "maze",
            0,
            {"baseline": True, "v": False},
            {"baseline": 1.0, "v": 0.25},
            {"baseline": [None, 1], "v": [1, 0]},
        ),
        row("maze", 1, {"baseline": False, "v": False}, {"baseline": 0.5, "v": 0.0}, {"baseline": [0, 0], "v": [1, 1]}),
        row(
            "maze", 2, {"baseline": True, "v": True}, {"baseline": 0.95, "v": 1.0}, {"baseline": [1, 1], "v": [None, 1]}
        ),
        row(
            "maze", 3, {"baseline": True, "v": False}, {"baseline": 1.0, "v": 0.5}, {"baseline": [None, 1], "v": [0, 0]}
        ),
    ]
    summary = summarize(rows, ["maze", "pattern"], ["baseline", "v"])
    assert summary["success_rate"] == {"maze": {"baseline": 0.75, "v": 0.25}, "pattern": {}}
    assert summary["mean_score"]["maze"] == pytest.approx({"baseline": 3.45 / 4, "v": 1.75 / 4})
    # 95% Wilson score intervals of 3/4 and 1/4 (z = 1.96: centre (p + z²/2n)/(1 + z²/n), by hand to 4 places).
    assert summary["interval"]["maze"]["baseline"] == pytest.approx([0.3006, 0.9544], abs=2e-4)
    assert summary["interval"]["maze"]["v"] == pytest.approx([0.0456, 0.6994], abs=2e-4)
    assert summary["count"] == {"maze": {"baseline": 4, "v": 4}, "pattern": {}}
    curves = summary["curves"]["maze"]
    assert curves["baseline"]["answer_wins"] == [0.25, 0.75] and curves["v"]["answer_wins"] == [0.5, 0.5]
    assert curves["baseline"]["explored_then_committed"] == 0.5 and curves["v"]["explored_then_committed"] == 0.25
    # Chance beside each: 1/2 for every run with a winner at that step (2 of 4 at step 0, all at step 1).
    assert curves["baseline"]["answer_wins_chance"] == [0.25, 0.5] and curves["v"]["answer_wins_chance"] == [0.375, 0.5]
    assert curves["baseline"]["final"]["answer_wins"] == 0.75 and curves["baseline"]["final"]["chance"] == 0.5
    text = table(summary)
    assert "| maze | baseline | 4 | 0.750 | [0.301, 0.954] |" in text and "| maze | v | 4 | 0.250 |" in text
    assert "pattern" not in text


def test_a_rate_of_none_or_all_gets_a_wilson_interval_not_zero_width():
    """0/n and n/n: a percentile bootstrap says [0, 0] and [1, 1] (certainty); Wilson does not."""
    fail = {"baseline": [None, 0]}
    rows = [row("maze", s, {"baseline": False}, {"baseline": 0.0}, fail) for s in range(10)]
    rows += [row("pattern", s, {"baseline": True}, {"baseline": 1.0}, fail) for s in range(2)]
    summary = summarize(rows, ["maze", "pattern"], ["baseline"])
    assert summary["interval"]["maze"]["baseline"] == pytest.approx([0.0, 0.2775], abs=2e-4)  # 0/10
    assert summary["interval"]["pattern"]["baseline"] == pytest.approx([0.3424, 1.0], abs=2e-4)  # 2/2


def test_a_partial_table_counts_the_instances_done_not_those_asked():
    fail = {"baseline": [None, 0]}
    rows = [row("maze", s, {"baseline": False}, {"baseline": 0.0}, fail) for s in range(3)]
    rows.append(row("pattern", 0, {"baseline": False}, {"baseline": 0.0}, fail))
    text = table(summarize(rows, ["maze", "pattern"], ["baseline"]))  # say n = 10 asked: 3 and 1 done
    assert "| maze | baseline | 3 | 0.000 |" in text and "| pattern | baseline | 1 | 0.000 |" in text
    assert "n=10" not in text


def test_a_bench_job_may_run_the_job_timeout_per_instance():
    request = parse_bench_request({"n": 4, "tasks": ["maze", "pattern"], "variants": [NOISE]})
    assert bench_timeout(3600, request.instance_count) == 8 * 3600
    assert isinstance(request, BenchRequest)
