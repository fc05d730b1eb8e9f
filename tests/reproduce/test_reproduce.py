"""`stepscope reproduce`: the reduced reproduction on tiny-i2v, checked against the stored runs it links to.

One reduced run (two families, one held-out instance each, 4 steps, 9 frames) is shared by the tests of this
module; each number checked here is recomputed from the stored run directories (final videos, x̂₀ arrays,
layer norms, previews) by code independent of stepscope.reproduce. The full-size specs (20 steps, 17
frames, every layer) are checked to be valid on the same model without running them.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from stepscope.reproduce import add_arguments, make_config, run_from_args
from stepscope.reproduce import analyses as an
from stepscope.reproduce.instances import held_out_instances, swap_partners, token_foreground
from stepscope.run import load_run
from stepscope.spec import check_against_model, latent_frame_of, parse_spec
from stepscope.stats import bootstrap_interval, wilson_interval
from stepscope.tasks import Canvas, candidate_curves, generate
from stepscope.tasks.core import PALETTE
from stepscope.train.data import HELD_OUT_SEEDS, instance_key, task_part

MODEL = "tiny-i2v"
FAMILIES = ("maze", "trajectory")
STEPS, FRAMES = 4, 9
REPO = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\]\((/#/jobs/([^/)?]+)/([a-z]+)(?:\?([^)]*))?)\)")


def _args(out: Path, *extra: str) -> argparse.Namespace:
    argv = ["--model", MODEL, "--out", str(out), "--device", "cpu", *extra]
    return add_arguments(argparse.ArgumentParser()).parse_args(argv)


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("reproduce") / "out"
    args = _args(out, "--reduced", "--tasks", ",".join(FAMILIES), "--steps", str(STEPS), "--frames", str(FRAMES))
    assert run_from_args(args) == 0
    return out, json.loads((out / "findings.json").read_text())


def _canvas() -> Canvas:
    return Canvas(size=64, frames=FRAMES)


def _instance(family: str):
    return held_out_instances(family, 1, _canvas())[0]


def test_instances_are_held_out_and_partners_answer_differently():
    canvas = Canvas()
    for family in ("maze", "trajectory", "pattern"):
        instances = held_out_instances(family, 3, canvas)
        seeds = [i.seed for i in instances]
        assert seeds == sorted(set(seeds)) and all(s in HELD_OUT_SEEDS for s in seeds)
        assert {task_part(instance_key(i)) for i in instances} == {"held-out"}  # tasks never trained on
        assert [i.difficulty for i in instances] == [1, 2, 3]
        for a, b in zip(instances, swap_partners(instances, canvas), strict=True):
            assert b.seed in HELD_OUT_SEEDS and b.seed not in {i.seed for i in instances}
            assert b.difficulty == a.difficulty
            params = {"maze": "goal", "trajectory": "landing_column", "pattern": "turns"}[family]
            assert b.params[params] != a.params[params], family


def test_token_foreground_maps_pixels_to_the_token_holding_them():
    pixels = np.zeros((17, 64, 64), dtype=bool)
    pixels[5, 17, 40] = True  # video frame 5 is latent frame 2; 16-pixel tokens: row 1, column 2
    mask = token_foreground(pixels, (5, 4, 4), (1, 2, 2), vae_spatial=8, vae_temporal=4)
    assert mask.sum() == 1 and mask[2, 1, 2]
    pixels[0, 63, 0] = True  # frame 0 is latent frame 0 alone
    mask = token_foreground(pixels, (5, 4, 4), (1, 2, 2), vae_spatial=8, vae_temporal=4)
    assert mask.sum() == 2 and mask[0, 3, 0]


def test_follows_credits_the_instance_whose_answer_the_video_shows():
    for family in ("maze", "trajectory", "pattern"):
        a = _instance(family)
        b = swap_partners([a], _canvas())[0]
        # B's own solution with A's first frame in front (as a swapped run would give): follows the source.
        video = b.ground_truth().copy()
        video[0] = a.first_frame
        verdict = an.follows(video, target=a, source=b)
        assert verdict["source"]["passed"] and verdict["source"]["answer_wins"], family
        assert not verdict["target"]["passed"], family
        assert an.follows(a.ground_truth(), target=a, source=b)["target"]["passed"], family


def test_summaries_pool_per_family_with_intervals():
    rows = []
    for family, passes in (("maze", [1, 1, 0, 1]), ("pattern", [0, 0, 0, 1])):
        for p in passes:
            verdict = {"passed": bool(p), "score": 0.5 * p}
            rows.append(
                {
                    "family": family,
                    "noise": {
                        "baseline": {"passed": True, "score": 1.0},
                        "noise_step": {"values": [1.0], "verdicts": [verdict]},
                        "noise_frame": {"values": [1.0], "verdicts": [{"passed": True, "score": 1.0}]},
                    },
                    "trajectory": {"baseline": {"passed": False, "score": 0.0}, "ensemble": verdict},
                }
            )
    noise = an.summarize_noise(rows, ("maze", "pattern"))
    assert noise["maze"]["noise_step"]["success"][0]["mean"] == pytest.approx(0.75)
    assert noise["pattern"]["noise_step"]["success"][0]["mean"] == pytest.approx(0.25)
    assert noise["all"]["noise_step"]["success"][0]["mean"] == pytest.approx(0.5)
    assert noise["all"]["noise_step"]["success"][0]["n"] == 8
    lo, hi = noise["all"]["noise_step"]["success"][0]["interval"]
    assert 0 < lo < 0.5 < hi < 1
    ensemble = an.summarize_ensemble(rows, ("maze", "pattern"))
    assert ensemble["maze"]["difference"]["mean"] == pytest.approx(0.75)
    assert ensemble["all"]["baseline"]["mean"] == 0.0


def test_a_rate_of_none_gets_a_wilson_interval_and_a_paired_difference_the_bootstrap():
    """0/4 is not certainty: the success rate's interval is Wilson's [0, 0.49]; a paired difference or score
    that is 0 on every instance keeps the bootstrap's [0, 0] (Wilson would be wrong for a difference)."""
    fail = {"passed": False, "score": 0.0}
    rows = [
        {
            "family": "maze",
            "noise": {
                "baseline": fail,
                "noise_step": {"values": [1.0], "verdicts": [fail]},
                "noise_frame": {"values": [1.0], "verdicts": [{"passed": True, "score": 0.25}]},
            },
            "trajectory": {"baseline": fail, "ensemble": fail},
        }
        for _ in range(4)
    ]
    noise = an.summarize_noise(rows, ("maze",))["maze"]
    for record in (noise["baseline"], noise["noise_step"]["success"][0]):
        assert record["mean"] == 0.0 and record["method"] == "wilson"
        assert record["interval"] == pytest.approx(wilson_interval(0, 4))
        assert record["interval"][1] == pytest.approx(0.4899, abs=1e-4)
    assert noise["noise_frame"]["success"][0]["interval"] == pytest.approx(wilson_interval(4, 4))
    assert noise["noise_frame"]["mean_score"][0]["interval"] == pytest.approx([0.25, 0.25])
    ensemble = an.summarize_ensemble(rows, ("maze",))["maze"]
    assert ensemble["ensemble"]["interval"] == pytest.approx(wilson_interval(0, 4))
    assert ensemble["difference"]["method"] == "bootstrap" and ensemble["difference"]["interval"] == [0.0, 0.0]
    assert ensemble["score_difference"]["interval"] == [0.0, 0.0]
    differences = [1.0, 0.0, -1.0, 1.0]
    assert an.average(differences)["interval"] == pytest.approx(bootstrap_interval(differences))
    with pytest.raises(ValueError, match="rate: outcomes must be 0 or 1"):
        an.rate([0.5, 1.0])


def test_reproduce_takes_its_intervals_from_stepscope_stats_not_the_bench():
    import ast

    for path in (REPO / "backend" / "stepscope" / "reproduce").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.module != "stepscope.bench", path.name


def _curve(steps: list[int], live: list[int], final_winner_is_answer: bool, final_live: bool = True) -> dict:
    return {
        "steps": steps,
        "live": live,
        "answer_wins": [final_winner_is_answer] * len(steps),
        "has_winner": [n > 0 for n in live],
        "explored_then_committed": False,
        "final_winner_is_answer": final_winner_is_answer,
        "final_winner_live": final_live,
        "candidate_count": 4,
    }


def test_candidate_summary_says_which_runs_its_means_are_over():
    curves = [
        _curve([0, 1, 2], [2, 1, 1], True),
        _curve([0, 1, 2], [3, 2, 1], False),
        _curve([0, 1], [1, 1], False),  # other steps: in the whole-run shares, not in the per-step means
        _curve([0, 1, 2], [0, 0, 0], False, final_live=False),
    ]
    rows = [{"family": "maze", "trajectory": {"candidates": c}} for c in curves]
    summary = an.summarize_candidates(rows, ("maze",))["maze"]
    assert summary["n"] == 4 and summary["n_per_step"] == 3
    assert summary["mean_live"][0]["n"] == 3 and summary["mean_live"][0]["mean"] == pytest.approx(5 / 3)
    assert summary["final_winner_is_answer"]["n"] == 4 and summary["final_winner_is_answer"]["mean"] == 0.25
    assert summary["final_winner_live"]["mean"] == 0.75
    when_live = summary["final_winner_is_answer_when_live"]
    assert when_live["n"] == 3 and when_live["mean"] == pytest.approx(1 / 3)
    # Chance beside each share: a winner picked at random among the 4 candidates, where there is a winner.
    assert summary["chance"] == pytest.approx(3 / 4 * 0.25)  # of all 4 runs, 3 with a live final winner
    assert summary["chance_when_live"] == pytest.approx(0.25)
    # Per step over the 3 runs with the first run's steps: winners at step 0 in 2 of them, at step 2 in 2.
    assert summary["answer_wins_chance"] == pytest.approx([2 / 3 * 0.25, 2 / 3 * 0.25, 2 / 3 * 0.25])
    older = [{k: v for k, v in c.items() if k not in ("has_winner", "candidate_count")} for c in curves]
    rows = [{"family": "maze", "trajectory": {"candidates": c}} for c in older]
    summary = an.summarize_candidates(rows, ("maze",))["maze"]  # findings stored before the chance was kept
    assert summary["answer_wins_chance"] is None and summary["chance"] is None and summary["chance_when_live"] is None


def test_layer_bands_are_thirds_of_any_depth():
    from stepscope.models.presets import ModelInfo
    from stepscope.reproduce.command import deviations

    assert an.layer_bands(16) == {"early": list(range(6)), "middle": list(range(6, 11)), "late": list(range(11, 16))}
    assert an.layer_bands(2) == {"early": [0], "middle": [1], "late": []}
    info = ModelInfo(task="i2v", experts=("transformer",), num_layers=2)
    text = " ".join(deviations(make_config(["maze"], 1, 4, 2, frames=9, reduced=True), info, [1]))
    assert "thirds of the depth (0, 1, none)" in text and "REDUCED" in text


def test_full_size_specs_are_valid_for_the_model():
    """The default sizes (20 steps, 17 frames, every layer, four strengths) pass the spec and model checks."""
    from stepscope.models.presets import PRESETS

    info = PRESETS[MODEL].info
    cfg = make_config(["maze", "trajectory", "pattern"], 12, 20, info.num_layers)
    assert cfg.injection_steps == tuple(range(20)) and cfg.swap_layers == tuple(range(info.num_layers))
    assert cfg.swap_frames == (1, 2, 3, 4) and cfg.noise_step == 10 and cfg.noise_frame == 2
    for family in cfg.families:
        a = held_out_instances(family, 1, cfg.canvas)[0]
        b = swap_partners([a], cfg.canvas)[0]
        for kind, spec in an.run_specs(a, b, MODEL, info.task, cfg).items():
            parsed = parse_spec(spec)
            check_against_model(parsed, info)
            members = sum(len(s.values) for s in parsed.sweeps)
            expected = {"noise": 8, "steps": 20, "swap": info.num_layers, "trajectory": 0}[kind]
            assert members == expected, kind


def test_findings_have_every_analysis_with_sample_sizes_and_intervals(reproduced):
    out, findings = reproduced
    assert findings["config"]["reduced"] and findings["config"]["families"] == list(FAMILIES)
    assert findings["runs_total"] == 4 * len(FAMILIES) == len(list((out / "runs").iterdir()))
    assert [r["seed"] for r in findings["instances"]] == [_instance(f).seed for f in FAMILIES]
    a = findings["analyses"]
    assert set(a) == {"noise", "injection_step", "layer_energy", "layer_swap", "seed_ensemble", "candidates"}
    for name in a:
        assert set(a[name]) == {*FAMILIES, "all"}, name

    def check(record, n, method):
        assert record["n"] == n and record["method"] == method
        lo, hi = record["interval"]
        assert lo - 1e-12 <= record["mean"] <= hi + 1e-12
        if method == "wilson":  # a success rate: k of n, never a zero-width interval
            assert record["interval"] == pytest.approx(wilson_interval(round(record["mean"] * n), n))
            assert hi - lo > 0.1

    for group, n in ((FAMILIES[0], 1), (FAMILIES[1], 1), ("all", len(FAMILIES))):
        check(a["noise"][group]["baseline"], n, "wilson")
        for record in a["noise"][group]["noise_step"]["success"] + a["noise"][group]["noise_frame"]["success"]:
            check(record, n, "wilson")
        for record in a["noise"][group]["noise_step"]["mean_score"]:
            check(record, n, "bootstrap")
        for record in a["injection_step"][group]["cka_x0_distance_final"]:
            check(record, n, "bootstrap")
        for record in a["injection_step"][group]["success"]:
            check(record, n, "wilson")
        for record in a["layer_energy"][group]["per_layer"]:
            check(record, n, "bootstrap")
        for record in a["layer_swap"][group]["follows_source"] + a["layer_swap"][group]["target_answer_wins"]:
            check(record, n, "wilson")
        check(a["seed_ensemble"][group]["ensemble"], n, "wilson")
        check(a["seed_ensemble"][group]["difference"], n, "bootstrap")
        check(a["seed_ensemble"][group]["score_difference"], n, "bootstrap")
        check(a["candidates"][group]["explored_then_committed"], n, "wilson")
        check(a["candidates"][group]["final_winner_is_answer"], n, "wilson")
        for record in a["candidates"][group]["mean_live"]:
            check(record, n, "bootstrap")
        assert a["candidates"][group]["n"] == a["candidates"][group]["n_per_step"] == n
    assert a["injection_step"]["all"]["steps"] == [1, STEPS - 1]
    assert a["layer_swap"]["all"]["layers"] == [4, 7]
    text = (out / "findings.md").read_text()
    for deviation in findings["deviations"]:
        assert deviation in text
    assert "REDUCED" in text and "n = 1" in text
    assert "Wilson score interval" in text and "percentile bootstrap (2,000 resamples" in text
    assert "third quarter of the depth" in text and "middle half" not in text
    assert "chance" in text and "read every candidate alike" in text and "green goal colour" not in text
    assert "| source answer wins | chance | target answer wins | chance |" in text
    for group in (*FAMILIES, "all"):
        candidates, swap = a["candidates"][group], a["layer_swap"][group]
        assert len(candidates["answer_wins_chance"]) == len(candidates["steps"])
        assert all(0 <= c <= 1 for c in candidates["answer_wins_chance"] + swap["target_answer_wins_chance"])
        assert candidates["chance_when_live"] is None or 0 < candidates["chance_when_live"] <= 0.5
    assert (out / "fig6_answer_wins.svg").exists() and "fig6_answer_wins.svg" in text
    experts = a["layer_energy"]["all"]["experts"]  # tiny-i2v: two experts, both run within 4 steps
    assert experts[0] == "transformer" and experts[-1] == "transformer_2" and "Experts by step (steps 0–" in text


def test_every_link_opens_a_stored_run_in_a_tab_the_explorer_has(reproduced):
    out, findings = reproduced
    explorer = (REPO / "frontend" / "views" / "explorer.js").read_text()
    tabs = set(re.findall(r"(\w+): \"", re.search(r"export const TABS = \{([^}]*)\}", explorer).group(1)))
    route = (REPO / "frontend" / "position.js").read_text()
    assert 'parts[0] === "jobs"' in route  # the explorer's routes are #/jobs/<id>/<tab>?<position>
    links = LINK.findall((out / "findings.md").read_text())
    assert len(links) >= 6 * len(FAMILIES) + 4 * len(FAMILIES)
    for _, run_id, tab, query in links:
        assert tab in tabs, tab
        run = load_run(str(out / "runs" / run_id))
        assert run.status == "finished"
        if query:
            trajectory = dict(p.split("=") for p in query.split("&")).get("right")
            assert trajectory in run.trajectories
    opened = {run_id for _, run_id, _, _ in links}
    assert opened == {run_id for row in findings["instances"] for run_id in row["runs"].values()}


def test_figures_are_svg(reproduced):
    out, _ = reproduced
    figures = sorted(out.glob("*.svg"))
    assert len(figures) == 8  # fig6 twice: live candidates, and the winner beside its chance
    for path in figures:
        root = ET.parse(path).getroot()
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert root.findall(".//{http://www.w3.org/2000/svg}circle"), path.name  # at least one data point
        assert f"]({path.name})" in (out / "findings.md").read_text()


def test_success_rates_match_the_stored_final_videos(reproduced):
    out, findings = reproduced
    for family in FAMILIES:
        row = next(r for r in findings["instances"] if r["family"] == family)
        instance = generate(family, row["difficulty"], row["seed"], canvas=_canvas())
        run = load_run(str(out / "runs" / row["runs"]["noise"]))
        for sweep in ("noise_step", "noise_frame"):
            for i, member in enumerate(run.sweep(sweep)["members"]):
                verdict = instance.score(run[member].video)
                assert findings["analyses"]["noise"][family][sweep]["success"][i]["mean"] == float(verdict.passed)
                assert row["noise"][sweep]["verdicts"][i]["score"] == pytest.approx(verdict.score)


def _linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA with latent positions as samples and channels as features (centred)."""
    x = x.reshape(x.shape[0], -1).T.astype(np.float64)
    y = y.reshape(y.shape[0], -1).T.astype(np.float64)
    x, y = x - x.mean(0), y - y.mean(0)
    return float(np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def test_injection_step_dissimilarity_matches_the_stored_x0(reproduced):
    out, findings = reproduced
    for family in FAMILIES:
        row = next(r for r in findings["instances"] if r["family"] == family)
        run = load_run(str(out / "runs" / row["runs"]["steps"]))
        base_final = run.baseline.x0[-1, 0]
        for i, member in enumerate(run.sweep("injection_step")["members"]):
            distance = 1 - _linear_cka(base_final, run[member].x0[-1, 0])
            stored = findings["analyses"]["injection_step"][family]["cka_x0_distance_final"][i]["mean"]
            assert stored == pytest.approx(distance, abs=1e-5)
            assert distance > 1e-3  # the noise changed the output


def test_foreground_energy_matches_the_stored_norms(reproduced):
    out, findings = reproduced
    colours = {"maze": ("agent", "trail", "goal"), "trajectory": ("agent",)}
    for family in FAMILIES:
        row = next(r for r in findings["instances"] if r["family"] == family)
        instance = generate(family, row["difficulty"], row["seed"], canvas=_canvas())
        video = instance.ground_truth()
        painted = np.zeros(video.shape[:3], dtype=bool)
        for name in colours[family]:
            painted |= (video == PALETTE[name]).all(axis=-1)
        run = load_run(str(out / "runs" / row["runs"]["trajectory"]))
        frames, height, width = run.record.shapes.tokens
        mask = np.zeros((frames, height, width), dtype=bool)
        for v in range(video.shape[0]):  # each video frame marks the tokens of its latent frame it paints
            for h in range(height):
                for w in range(width):
                    mask[latent_frame_of(v), h, w] |= painted[v, 16 * h : 16 * h + 16, 16 * w : 16 * w + 16].any()
        norms = run.baseline.layer_norms("cond")[:, 0].astype(np.float64) ** 2  # (steps, layers, F', H', W')
        ratio = norms[..., mask].mean(-1) / norms[..., ~mask].mean(-1)
        stored = [r["mean"] for r in findings["analyses"]["layer_energy"][family]["per_layer"]]
        np.testing.assert_allclose(stored, ratio.mean(axis=0), rtol=1e-9)
        assert not np.allclose(ratio, 1.0)


def test_candidate_curves_match_the_stored_previews(reproduced):
    out, findings = reproduced
    for family in FAMILIES:
        row = next(r for r in findings["instances"] if r["family"] == family)
        instance = generate(family, row["difficulty"], row["seed"], canvas=_canvas())
        run = load_run(str(out / "runs" / row["runs"]["trajectory"]))
        curves = candidate_curves(instance, [member[0] for member in run.baseline.previews], run.baseline.steps)
        stored = findings["analyses"]["candidates"][family]
        assert stored["steps"] == list(range(STEPS))
        assert [r["mean"] for r in stored["mean_live"]] == [float(v) for v in curves.live]
        assert stored["explored_then_committed"]["mean"] == float(curves.explored_then_committed())
        # One run a family: chance at a step is 1 / K where it has a winner, else 0.
        k = len(instance.candidates)
        assert stored["answer_wins_chance"] == pytest.approx([(w is not None) / k for w in curves.winner])
        assert stored["chance"] == pytest.approx((curves.winner[-1] is not None) / k)


def test_ensemble_and_swap_read_their_own_trajectories(reproduced):
    out, findings = reproduced
    row = findings["instances"][0]
    run = load_run(str(out / "runs" / row["runs"]["trajectory"]))
    assert run["ensemble"].record.seeds == [row["seed"], row["seed"] + 1, row["seed"] + 2]
    ensemble = findings["analyses"]["seed_ensemble"][row["family"]]["ensemble"]["mean"]
    assert ensemble == float(run["ensemble"].record.task_score.passed)
    swap = load_run(str(out / "runs" / row["runs"]["swap"]))
    source = next(t for t in swap.trajectories.values() if t.kind == "swap_source")
    assert source.record.seeds == [row["partner_seed"]]
    members = swap.sweep("swap_layer")["members"]
    assert [swap[m].record.interventions[0]["layers"] for m in members] == [[4], [7]]
    assert all(swap[m].record.interventions[0]["frames"] == [1, 2] for m in members)


def test_a_second_run_into_the_same_directory_is_refused(reproduced, capsys):
    out, _ = reproduced
    args = _args(out, "--reduced", "--tasks", FAMILIES[0], "--steps", str(STEPS), "--frames", str(FRAMES))
    assert run_from_args(args) == 2
    assert "out: " in capsys.readouterr().err


def test_resume_reads_the_finished_runs_and_refuses_other_specs(reproduced, tmp_path, capsys):
    out, findings = reproduced
    copy = tmp_path / "out"
    shutil.copytree(out / "runs", copy / "runs")
    reduced = ["--reduced", "--tasks", ",".join(FAMILIES), "--frames", str(FRAMES), "--resume"]
    assert run_from_args(_args(copy, *reduced, "--steps", str(STEPS))) == 0
    resumed = json.loads((copy / "findings.json").read_text())
    assert resumed["runs_reused"] == resumed["runs_total"] == 4 * len(FAMILIES)
    assert resumed["analyses"] == findings["analyses"]
    assert run_from_args(_args(copy, *reduced, "--steps", str(STEPS + 1))) == 2
    err = capsys.readouterr().err
    assert "error: out: " in err and "has another spec" in err


def test_resume_runs_an_interrupted_run_again(reproduced, tmp_path, capsys):
    """A run left `running` (killed) or `failed` (Ctrl-C) with the same spec is deleted and run again; the
    finished runs are read as they are."""
    out, findings = reproduced
    copy = tmp_path / "out"
    shutil.copytree(out / "runs", copy / "runs")
    rows = {r["family"]: r for r in findings["instances"]}
    interrupted = {rows[FAMILIES[0]]["runs"]["noise"]: "running", rows[FAMILIES[1]]["runs"]["noise"]: "failed"}
    for run_id, status in interrupted.items():
        manifest_path = copy / "runs" / run_id / "manifest.json"
        manifest = json.loads(manifest_path.read_text())
        manifest["status"] = status
        manifest_path.write_text(json.dumps(manifest))
    kept = {p: p.read_bytes() for p in (copy / "runs").glob("*/manifest.json") if p.parent.name not in interrupted}
    reduced = ["--reduced", "--tasks", ",".join(FAMILIES), "--frames", str(FRAMES), "--steps", str(STEPS)]
    assert run_from_args(_args(copy, *reduced, "--resume")) == 0
    resumed = json.loads((copy / "findings.json").read_text())
    assert resumed["runs_redone"] == 2 and resumed["runs_reused"] == resumed["runs_total"] - 2
    err = capsys.readouterr().err
    for run_id, status in interrupted.items():
        assert load_run(str(copy / "runs" / run_id)).status == "finished"
        assert f"{run_id} is {status}: running it again" in err
    assert all(p.read_bytes() == data for p, data in kept.items())  # the finished runs were read, not rewritten
    for family in FAMILIES:
        before = rows[family]["noise"]["noise_step"]["verdicts"]
        after = next(r for r in resumed["instances"] if r["family"] == family)["noise"]["noise_step"]["verdicts"]
        assert [v["passed"] for v in after] == [v["passed"] for v in before]
        assert [v["score"] for v in after] == pytest.approx([v["score"] for v in before])


@pytest.mark.parametrize(
    ("argv", "field"),
    [(["--n", "0"], "n"), (["--tasks", "sudoku"], "tasks"), (["--frames", "10"], "canvas.frames")],
)
def test_bad_options_are_refused_naming_the_option(tmp_path, capsys, argv, field):
    assert run_from_args(_args(tmp_path / "out", *argv)) == 2
    assert f"error: {field}: " in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_module_runs_on_its_own():
    proc = subprocess.run(
        [sys.executable, "-m", "stepscope.reproduce", "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and "--reduced" in proc.stdout
