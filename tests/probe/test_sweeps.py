"""Sweeps: members continue exactly from the baseline's stored state; the curve is each member's final comparison."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import stepscope
from stepscope.probe import run_experiment, run_trajectory
from stepscope.probe.interventions import HiddenStateBank, LatentPerturbations, SwapRecorder, SwapReplayer
from stepscope.probe.trajectory import SolverState
from stepscope.spec import LayerSwap, NoiseAtStep, SourceRun, check_spec

from .helpers import CollectingSink, inputs
from .test_experiment_wiring import direct_cka

STEPS = 8


def _noise(step: int) -> LatentPerturbations:
    return LatentPerturbations([NoiseAtStep(steps=[step], strength=1.0)])


@pytest.mark.parametrize("fixture", ["tiny", "tiny_euler"])
def test_a_member_resumed_from_the_stored_state_equals_one_run_from_scratch(fixture, request):
    model = request.getfixturevalue(fixture)
    base = run_trajectory(model, inputs(steps=STEPS), keep_states=[3, 6])
    assert sorted(base.states) == [3, 6]
    for k in (3, 6):
        scratch_sink, resumed_sink = CollectingSink(), CollectingSink()
        scratch = run_trajectory(model, inputs(steps=STEPS), perturbations=_noise(k), sink=scratch_sink)
        resumed = run_trajectory(
            model, inputs(steps=STEPS), perturbations=_noise(k), resume=base.states[k], sink=resumed_sink
        )
        assert [c.index for c in resumed_sink.captures] == list(range(k, STEPS))
        torch.testing.assert_close(resumed.final_latents, scratch.final_latents, rtol=0, atol=1e-5)
        for a, b in zip(scratch_sink.captures[k:], resumed_sink.captures, strict=True):
            torch.testing.assert_close(b.x0, a.x0, rtol=0, atol=1e-5)
        assert resumed.sigmas == scratch.sigmas and resumed.timesteps == scratch.timesteps
        assert resumed.perturbations == scratch.perturbations
        # The noise moved the run, so agreeing with the scratch run is not agreeing with the baseline.
        assert (resumed.final_latents - base.final_latents).abs().max() > 0.1


def test_the_stored_unipc_state_carries_its_history_and_is_needed(tiny):
    base = run_trajectory(tiny, inputs(steps=STEPS), keep_states=[4])
    state = base.states[4]
    assert state.scheduler["_step_index"] == 4 and state.scheduler["lower_order_nums"] == 2
    assert state.scheduler["last_sample"] is not None
    assert all(m is not None for m in state.scheduler["model_outputs"])
    # The latent alone (the scheduler as freshly set, at step 4) continues differently: the history matters.
    latent_only = SolverState(4, state.latents, {"_step_index": 4}, state.timesteps, state.sigmas, state.experts)
    wrong = run_trajectory(tiny, inputs(steps=STEPS), resume=latent_only)
    right = run_trajectory(tiny, inputs(steps=STEPS), resume=state)
    torch.testing.assert_close(right.final_latents, base.final_latents, rtol=0, atol=1e-5)
    assert (wrong.final_latents - base.final_latents).abs().max() > 1e-3


def test_a_layer_swap_resumed_from_the_stored_state_equals_one_run_from_scratch(tiny):
    swap = LayerSwap(layers=[5], steps=[4], source=SourceRun(seed=3))
    bank = HiddenStateBank()
    run_trajectory(tiny, inputs(steps=STEPS, seeds=[3]), rewrites=[([5], SwapRecorder(swap, bank))])
    base = run_trajectory(tiny, inputs(steps=STEPS), keep_states=[4])
    replay = [([5], SwapReplayer(swap, bank, tokens_per_frame=16))]
    scratch = run_trajectory(tiny, inputs(steps=STEPS), rewrites=replay)
    resumed = run_trajectory(tiny, inputs(steps=STEPS), rewrites=replay, resume=base.states[4])
    bank.close()
    torch.testing.assert_close(resumed.final_latents, scratch.final_latents, rtol=0, atol=1e-5)
    assert (resumed.final_latents - base.final_latents).abs().max() > 0.1


def test_a_sweep_over_steps_stores_members_and_their_curve(tiny, run_dir):
    template = {"kind": "noise_at_step", "steps": [0], "strength": 1.0, "units": "sigma", "seed": 2}
    # The first step, one inside and the last: a member's index differs from its value (3 is member 1).
    values = [0, 3, STEPS - 1]
    spec = check_spec(
        {
            "prompt": "a maze",
            "steps": STEPS,
            "variants": [{"name": "n3", "interventions": [{**template, "steps": [3]}]}],
            "sweeps": [{"name": "inject", "over": "steps", "values": values, "intervention": template}],
        },
        tiny.info,
    )
    manifest = run_experiment(tiny, spec, run_dir)
    assert manifest["status"] == "finished"
    run = stepscope.load_run(run_dir.path)
    sweep = run.sweep("inject")
    names = [f"inject.{i:03d}" for i in range(len(values))]
    assert sweep["members"] == names and sweep["values"] == values and sweep["over"] == "steps"
    assert sweep["start_steps"] == values  # each member continues from the baseline's state
    member = run["inject.001"]
    assert member.entry["kind"] == "sweep_member" and member.entry["resumed_from_step"] == 3
    (stored,) = member.entry["interventions"]
    assert {k: stored[k] for k in template} == {**template, "steps": [3]}
    assert member.steps == [3, 4, 5, 6, 7]  # steps before 3 are the baseline's
    assert member.entry["perturbations"][0]["step"] == 3
    # The member equals the same intervention run as a variant from step 0.
    np.testing.assert_allclose(member.final_latents, run["n3"].final_latents, rtol=0, atol=1e-5)
    curve = sweep["curve"]
    base_final = run.baseline.x0[-1][0].astype(np.float64)
    for i, (name, step) in enumerate(zip(names, values, strict=True)):
        final = run[name].x0[-1][0].astype(np.float64)
        expected_l2 = np.linalg.norm(final - base_final) / np.linalg.norm(base_final)
        assert curve["final_relative_l2"][i] == pytest.approx(expected_l2, rel=1e-4)
        tokens = (base_final.reshape(base_final.shape[0], -1).T, final.reshape(final.shape[0], -1).T)
        assert curve["cka_x0_distance_final"][i] == pytest.approx(1.0 - direct_cka(*tokens), abs=1e-6)
        hidden = run.metrics(name)["hidden_state_cka_distance"]
        assert curve["hidden_state_cka_distance_final"][i] == [row[-1] for row in hidden["values"]]
        metrics = run.metrics(name)
        assert metrics["cka_x0_distance"][:step] == [0.0] * step and metrics["cka_x0_distance"][step] > 0
    assert curve["hidden_state_layers"] == list(range(8))
    assert curve["score"] == [None] * len(values)
    assert min(curve["final_relative_l2"]) > 0.01


def test_ensemble_sweeps_run_from_scratch_and_a_swap_sweep_runs_b_once(tiny, run_dir):
    swap = {"kind": "layer_swap", "layers": [0], "steps": [1], "source": {"seed": 5}}
    spec = check_spec(
        {
            "steps": 3,
            "probes": {"final_decode": False},
            "sweeps": [
                {
                    "name": "ens",
                    "over": "layers",
                    "values": [2, 6],
                    "intervention": {"kind": "seed_ensemble", "seeds": [0, 1]},
                },
                {"name": "swap", "over": "layers", "values": [1, 6], "intervention": swap},
            ],
        },
        tiny.info,
    )
    manifest = run_experiment(tiny, spec, run_dir)
    assert manifest["status"] == "finished"
    trajectories = manifest["trajectories"]
    assert manifest["sweeps"]["ens"]["start_steps"] == [0, 0]  # another batch: nothing to resume from
    assert trajectories["ens.001"]["seeds"] == [0, 1] and "resumed_from_step" not in trajectories["ens.001"]
    assert manifest["sweeps"]["swap"]["start_steps"] == [1, 1]
    assert [n for n in trajectories if n.startswith("swap.source")] == ["swap.source0"]
    assert trajectories["swap.source0"]["seeds"] == [5]
    curve = manifest["sweeps"]["swap"]["curve"]
    assert all(v > 0 for v in curve["final_relative_l2"])
    # A block's output depends only on its input states (and the shared conditioning), so swapping all
    # tokens of any one layer makes that step's cond forward B's own: layers 1 and 6 give one result.
    assert curve["final_relative_l2"][0] == pytest.approx(curve["final_relative_l2"][1], abs=1e-6)
    assert curve["cka_x0_distance_final"][0] == pytest.approx(curve["cka_x0_distance_final"][1], abs=1e-6)
