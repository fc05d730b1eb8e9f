"""Interventions change exactly what they claim, and nothing else."""

from __future__ import annotations

import json
from typing import get_args

import numpy as np
import pytest
import torch

import stepscope
from stepscope import cli
from stepscope import spec as spec_module
from stepscope.probe import run_experiment, run_trajectory
from stepscope.probe.interventions import (
    INTERVENTIONS,
    EnsembleAverager,
    HiddenStateBank,
    Intervention,
    LatentPerturbations,
    PlanContext,
    SwapRecorder,
    SwapReplayer,
    TrajectoryChanges,
    default_ensemble_layers,
    intervention_for,
)
from stepscope.spec import Guidance, LayerSwap, NoiseAtFrame, NoiseAtStep, SeedEnsemble, SourceRun, check_spec

from .helpers import CollectingSink, inputs


class TransformerInputs:
    """The latent (hidden_states) entering each forward of the transformer."""

    def __init__(self, model):
        self.seen = []
        self.handle = model.pipe.transformer.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        self.seen.append(kwargs["hidden_states"].detach().clone())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def _x0s(model, **kwargs):
    sink = CollectingSink()
    result = run_trajectory(model, sink=sink, **kwargs)
    return sink.x0, result


def test_noise_at_step_leaves_earlier_steps_bitwise_and_changes_step_k(tiny):
    base, _ = _x0s(tiny, inputs=inputs())
    noise = LatentPerturbations([NoiseAtStep(steps=[5], strength=0.5)])
    varied, _ = _x0s(tiny, inputs=inputs(), perturbations=noise)
    for s in range(5):
        # Same process, weights, shapes and kernels: CPU kernels repeat bitwise, so any change is the noise.
        assert torch.equal(base[s], varied[s]), f"step {s} before the noise changed"
    assert not torch.allclose(base[5], varied[5])


def test_noise_at_step_zero_perturbs_the_initial_latent(tiny):
    with TransformerInputs(tiny) as clean:
        _x0s(tiny, inputs=inputs(steps=2))
    with TransformerInputs(tiny) as noisy:
        _x0s(tiny, inputs=inputs(steps=2), perturbations=LatentPerturbations([NoiseAtStep(steps=[0], strength=1.0)]))
    delta = noisy.seen[0] - clean.seen[0]
    # relative strength 1.0: the added noise has about the latent's own std
    assert delta.std().item() == pytest.approx(clean.seen[0].std().item(), rel=0.15)


def test_absolute_noise_strength(tiny):
    with TransformerInputs(tiny) as clean:
        _x0s(tiny, inputs=inputs(steps=1))
    with TransformerInputs(tiny) as noisy:
        _x0s(
            tiny,
            inputs=inputs(steps=1),
            perturbations=LatentPerturbations([NoiseAtStep(steps=[0], strength=0.25, relative=False)]),
        )
    assert (noisy.seen[0] - clean.seen[0]).std().item() == pytest.approx(0.25, rel=0.15)


def test_noise_at_frame_changes_only_that_frame_at_the_first_step(tiny):
    with TransformerInputs(tiny) as clean:
        _x0s(tiny, inputs=inputs(steps=3))
    with TransformerInputs(tiny) as noisy:
        _x0s(tiny, inputs=inputs(steps=3), perturbations=LatentPerturbations([NoiseAtFrame(frames=[2], strength=1.0)]))
    first_clean, first_noisy = clean.seen[0], noisy.seen[0]  # (1, C, F, H, W), cond pass of step 0
    changed = (first_clean != first_noisy).flatten(3).any(-1).any(1)[0]  # per latent frame
    assert changed.tolist() == [False, False, True, False, False]


def test_noise_has_its_own_seed(tiny):
    a, _ = _x0s(
        tiny, inputs=inputs(steps=3), perturbations=LatentPerturbations([NoiseAtStep(steps=[1], strength=1, seed=1)])
    )
    b, _ = _x0s(
        tiny, inputs=inputs(steps=3), perturbations=LatentPerturbations([NoiseAtStep(steps=[1], strength=1, seed=1)])
    )
    c, _ = _x0s(
        tiny, inputs=inputs(steps=3), perturbations=LatentPerturbations([NoiseAtStep(steps=[1], strength=1, seed=2)])
    )
    assert torch.equal(a[2], b[2]) and not torch.equal(a[2], c[2])  # same process and kernels: a repeat is bitwise


class RecordLayers:
    """A block rewrite that records the (possibly rewritten) output and changes nothing."""

    def __init__(self):
        self.outputs = {}

    def __call__(self, step, expert, pass_name, layer, output):
        self.outputs[(step, pass_name, layer)] = output.detach().clone()
        return None


def _swap_runs(model, swap: LayerSwap, source_inputs, steps=6):
    all_layers = list(range(model.info.num_layers))
    bank = HiddenStateBank()
    a_rec, b_rec, swapped_rec = RecordLayers(), RecordLayers(), RecordLayers()
    a, _ = _x0s(model, inputs=inputs(steps=steps), rewrites=[(all_layers, a_rec)])
    b, _ = _x0s(model, inputs=source_inputs, rewrites=[(swap.layers, SwapRecorder(swap, bank)), (all_layers, b_rec)])
    tokens_per_frame = 16
    swapped, result = _x0s(
        model,
        inputs=inputs(steps=steps),
        rewrites=[(swap.layers, SwapReplayer(swap, bank, tokens_per_frame)), (all_layers, swapped_rec)],
    )
    bank.close()
    return a, b, swapped, a_rec, b_rec, swapped_rec


def test_layer_swap_with_an_identical_source_is_a_no_op(tiny):
    swap = LayerSwap(layers=[4], steps=None, passes="both", source=SourceRun())
    a, _, swapped, *_ = _swap_runs(tiny, swap, inputs(steps=6))
    for x, y in zip(a, swapped, strict=True):  # the swap copies A's own states back: a bitwise no-op
        assert torch.equal(x, y)


def test_layer_swap_puts_b_states_at_layer_l_and_leaves_earlier_layers(tiny):
    swap = LayerSwap(layers=[4], steps=[2], passes="cond", source=SourceRun(prompt="a cat on a sofa", seed=9))
    a, b, swapped, a_rec, b_rec, s_rec = _swap_runs(tiny, swap, inputs(steps=6, prompt="a cat on a sofa", seeds=[9]))
    # Bitwise: one process and one set of kernels, and the swapped states are exact copies of B's.
    for step in range(2):  # before the swap step nothing changed
        assert torch.equal(a[step], swapped[step])
    assert torch.equal(s_rec.outputs[(2, "cond", 4)], b_rec.outputs[(2, "cond", 4)])
    assert not torch.equal(s_rec.outputs[(2, "cond", 4)], a_rec.outputs[(2, "cond", 4)])
    for layer in range(4):
        assert torch.equal(s_rec.outputs[(2, "cond", layer)], a_rec.outputs[(2, "cond", layer)])
    # the uncond pass was not swapped, so its layer 4 is still A's
    assert torch.equal(s_rec.outputs[(2, "uncond", 4)], a_rec.outputs[(2, "uncond", 4)])
    assert not torch.equal(a[2], swapped[2])


def test_layer_swap_of_chosen_frames_touches_only_their_tokens(tiny):
    swap = LayerSwap(layers=[3], steps=[1], frames=[1, 3], source=SourceRun(prompt="something else"))
    _, _, _, a_rec, b_rec, s_rec = _swap_runs(tiny, swap, inputs(steps=3, prompt="something else"), steps=3)
    got = s_rec.outputs[(1, "cond", 3)][0].reshape(5, 16, -1)
    from_a = a_rec.outputs[(1, "cond", 3)][0].reshape(5, 16, -1)
    from_b = b_rec.outputs[(1, "cond", 3)][0].reshape(5, 16, -1)
    for frame in range(5):  # exact copies of A's or B's tokens, computed by the same kernels
        expected = from_b if frame in (1, 3) else from_a
        assert torch.equal(got[frame], expected[frame])


def test_hidden_state_bank_spills_to_disk_and_cleans_up():
    bank = HiddenStateBank(memory_budget=1000)
    small, big = torch.randn(10, 10), torch.randn(100, 100)
    bank.put((0, "cond", 1), small)
    bank.put((0, "cond", 2), big)
    assert bank.bytes_in_memory == 400 and len(bank) == 2
    scratch = bank._scratch.name
    assert torch.equal(bank.get((0, "cond", 2), torch.device("cpu")), big)  # a file round trip of float32 is exact
    bank.close()
    import os

    assert not os.path.exists(scratch)


def test_seed_ensemble_of_identical_seeds_equals_the_single_seed_run(tiny):
    base, base_result = _x0s(tiny, inputs=inputs(steps=6))
    ensemble = SeedEnsemble(seeds=[0, 0, 0])
    layers = default_ensemble_layers(8)
    averaged = [(layers, EnsembleAverager(ensemble, layers))]
    _, result = _x0s(tiny, inputs=inputs(steps=6, seeds=[0, 0, 0]), rewrites=averaged)
    _, batch = _x0s(tiny, inputs=inputs(steps=6, seeds=[0, 0, 0]))
    assert result.final_latents.shape[0] == 3
    # Averaging identical members is exact: bitwise the same batch without averaging ...
    assert torch.equal(result.final_latents, batch.final_latents)
    # ... and a batch of 3 equals the single run up to the CPU GEMM's batch-size rounding.
    for member in range(3):
        torch.testing.assert_close(
            result.final_latents[member : member + 1], base_result.final_latents, rtol=0, atol=2e-5
        )


def test_seed_ensemble_averages_states_at_its_layers_and_steps(tiny):
    # "sequential" replaces each chosen layer's output by the mean as computed: members are equal there.
    ensemble = SeedEnsemble(seeds=[0, 1, 2], layers=[4], steps=[0], mode="sequential")
    rec = RecordLayers()
    _x0s(
        tiny,
        inputs=inputs(steps=3, seeds=[0, 1, 2]),
        rewrites=[([4], EnsembleAverager(ensemble, [4])), (list(range(8)), rec)],
    )
    at = rec.outputs[(0, "cond", 4)]
    assert torch.equal(at[0], at[1]) and torch.equal(at[1], at[2])  # bitwise: each member gets the one mean
    before = rec.outputs[(0, "cond", 3)]
    assert not torch.equal(before[0], before[1])
    later = rec.outputs[(1, "cond", 4)]
    assert not torch.equal(later[0], later[1])


def test_every_kind_of_the_spec_has_one_intervention_class():
    kinds = set(get_args(get_args(spec_module.Intervention)[0]))
    assert set(INTERVENTIONS) == kinds
    assert all(issubclass(cls, Intervention) and cls is not Intervention for cls in INTERVENTIONS.values())


def test_each_intervention_applies_its_own_part_and_says_where_a_sweep_member_starts():
    base = inputs(steps=6, guidance=5.0, guidance_2=4.0)
    banks = []

    def source_states(swap):
        banks.append(HiddenStateBank())
        return banks[-1]

    context = PlanContext(base, num_layers=8, tokens_per_frame=16, source_states=source_states)
    changes = TrajectoryChanges(inputs=base)
    noise = NoiseAtStep(steps=[4, 2], strength=1.0)
    frame_noise = NoiseAtFrame(frames=[1], strength=1.0)
    swap = LayerSwap(layers=[3], steps=[5], source=SourceRun(seed=1))
    ensemble = SeedEnsemble(seeds=[0, 1], steps=[3])
    for iv in (noise, Guidance(scale=2.0), frame_noise, ensemble, swap):
        intervention_for(iv).apply(changes, context)
    assert changes.noise == [noise, frame_noise]  # in the variant's order: they become one LatentPerturbations
    assert (changes.inputs.guidance, changes.inputs.guidance_2, changes.inputs.seeds) == (2.0, 4.0, [0, 1])
    (ens_layers, averager), (swap_layers, replayer) = changes.rewrites
    assert ens_layers == [4, 5] and isinstance(averager, EnsembleAverager)  # the default layers of depth 8
    assert swap_layers == [3] and isinstance(replayer, SwapReplayer) and replayer.bank is banks[0]
    assert base.guidance == 5.0 and base.seeds == [0]  # the baseline's inputs are left as they were
    starts = [intervention_for(iv).first_step() for iv in (noise, frame_noise, swap, ensemble, Guidance(scale=1.0))]
    assert starts == [2, 0, 5, 0, 0]  # an ensemble's batch is not the baseline's: from scratch
    assert [intervention_for(iv).source_runs() for iv in (noise, swap, ensemble)] == [0, 1, 0]
    assert intervention_for(LayerSwap(layers=[2, 3], source=SourceRun())).warnings()
    assert not intervention_for(noise).warnings()


def test_default_ensemble_layers_are_the_middle_half():
    assert default_ensemble_layers(40) == list(range(20, 30))
    assert default_ensemble_layers(8) == [4, 5]


def test_experiment_group_writes_comparisons(tiny, run_dir):
    spec = check_spec(
        {
            "prompt": "a maze",
            "steps": 6,  # enough for steps before, at and after the noise at step 4
            "variants": [
                {"name": "same", "interventions": [{"kind": "layer_swap", "layers": [4], "source": {}}]},
                {"name": "noise4", "interventions": [{"kind": "noise_at_step", "steps": [4], "strength": 2.0}]},
                {"name": "ens", "interventions": [{"kind": "seed_ensemble", "seeds": [0, 5, 7]}]},
                {"name": "nocfg", "interventions": [{"kind": "guidance", "scale": 1.0}]},
            ],
        },
        tiny.info,
    )
    manifest = run_experiment(tiny, spec, run_dir)
    assert manifest["status"] == "finished"
    run = stepscope.load_run(run_dir.path)
    assert set(run.trajectories) == {"baseline", "same.source0", "same", "noise4", "ens", "nocfg"}
    same = run.metrics("same")  # swapping in an identical run's states is a bitwise no-op (see above)
    assert max(same["cka_x0_distance"]) == 0.0
    assert same["final_relative_l2"] == 0.0
    np.testing.assert_array_equal(run["same"].final_latents, run.baseline.final_latents)
    noise = run.metrics("noise4")
    # Steps before the noise repeat bitwise in one process, so their distance is exactly 0.
    assert all(d == 0.0 for d in noise["cka_x0_distance"][:4]) and noise["cka_x0_distance"][4] > 0
    assert noise["difference"].shape == (6, 5, 8, 8)
    assert noise["difference"][:4].max() == 0 and noise["difference"][4].max() > 0
    assert np.array(noise["layer_norm_map_r2_distance"]["values"]).shape == (8, 6)  # (layers, steps)
    hidden = noise["hidden_state_cka_distance"]
    assert hidden["layers"] == list(range(8)) and hidden["sketch_rows"] == 512
    values = np.array(hidden["values"], dtype=float)  # (layers, steps)
    assert values.shape == (8, 6)
    # Identical hidden states before the injected step; the noise changes every layer's states from step 4.
    assert np.abs(values[:, :4]).max() < 1e-6 and (values[:, 4:] > 1e-4).all()
    assert np.abs(np.array(same["hidden_state_cka_distance"]["values"], dtype=float)).max() < 1e-6
    (applied,) = run["noise4"].entry["perturbations"]
    assert applied["step"] == 4 and applied["kind"] == "noise_at_step"
    assert applied["solver_state"] == "model_input+corrected_sample"  # tiny runs UniPC
    # δ = 2 × std(x) × ε, and the latent has mean ≈ 0: ‖δ‖ ≈ 2‖x‖.
    assert applied["noise_l2"][0] == pytest.approx(2.0 * applied["latent_l2"][0], rel=0.05)
    assert run["ens"].x0.shape[1] == 3 and run["ens"].entry["returned_member"] == 0
    assert run["ens"].previews.shape[1] == 3
    assert run["nocfg"].entry["guidance"] == 1.0
    assert "commitment_step" in noise


def test_cli_runs_an_experiment_file(tmp_path, capsys):
    # `stepscope run` in this process: tests/probe/test_capture.py runs the installed entry point as a process.
    spec = {
        "prompt": "a maze",
        "steps": 5,
        "variants": [{"name": "noise2", "interventions": [{"kind": "noise_at_step", "steps": [2], "strength": 1.0}]}],
    }
    path = tmp_path / "experiment.json"
    path.write_text(json.dumps(spec))
    out = tmp_path / "out"
    assert cli.main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary == {
        "out": str(out),
        "status": "finished",
        "trajectories": {"baseline": "finished", "noise2": "finished"},
    }
    run = stepscope.load_run(str(out))
    assert run.variants == ["noise2"]
    assert run.metrics("noise2")["cka_x0_distance"][2] > 0
