"""The seed ensemble does not degenerate: every chosen layer counts, checked against a hand-written reference.

The reference records every block's output of the un-averaged batch with plain forward hooks,
forms the expected averaged state itself, and replays it with a plain forward hook on the last
chosen block, outside the project's rewrite machinery.
"""

from __future__ import annotations

import pytest
import torch

from stepscope.probe import run_trajectory
from stepscope.probe.interventions import (
    ENSEMBLE_LAST_LAYER,
    ENSEMBLE_MODES,
    ENSEMBLE_SEQUENTIAL,
    ENSEMBLE_UPDATES,
    EnsembleAverager,
)
from stepscope.spec import SeedEnsemble

from .helpers import BlockOutputs, inputs

SEEDS = [0, 1, 2]
STEPS = 3
NUM_LAYERS = 8  # the tiny transformer


def _ensemble_run(model, layers: list[int], mode: str, seeds=SEEDS):
    averager = EnsembleAverager(SeedEnsemble(seeds=seeds, layers=layers), layers, mode=mode)
    return run_trajectory(model, inputs(steps=STEPS, seeds=seeds), rewrites=[(layers, averager)])


@pytest.fixture(scope="module")
def plain_batch(tiny):
    """The un-averaged batch: its final latents and every block output of step 0 (cond, uncond)."""
    with BlockOutputs(tiny) as outputs:
        result = run_trajectory(tiny, inputs(steps=STEPS, seeds=SEEDS))
    forwards = outputs.per_forward(NUM_LAYERS)
    return result.final_latents, {"cond": forwards[0][1], "uncond": forwards[1][1]}


def _replay(model, layer: int, replacement: dict[str, torch.Tensor]) -> torch.Tensor:
    """Final latents of the batch with `layer`'s step-0 outputs replaced (cond pass first, then uncond)."""
    order = [replacement["cond"], replacement["uncond"]]
    calls = {"n": 0}

    def hook(module, args, output):
        calls["n"] += 1
        return order[calls["n"] - 1] if calls["n"] <= 2 else None

    handle = model.pipe.transformer.blocks[layer].register_forward_hook(hook)
    try:
        return run_trajectory(model, inputs(steps=STEPS, seeds=SEEDS)).final_latents
    finally:
        handle.remove()


def _mean(x: torch.Tensor) -> torch.Tensor:
    return x.double().mean(dim=0, keepdim=True)


def test_updates_mode_matches_the_reference(tiny, plain_batch):
    _, states = plain_batch
    # h_k ← (input of layer 4)_k + mean_j(out4 − in4) + mean_j(out5 − out4), written out directly.
    expected = {p: (s[3].double() + _mean(s[4] - s[3]) + _mean(s[5] - s[4])).float() for p, s in states.items()}
    handed_on = []  # what block 6 receives: layer 5's output after the ensemble rewrote it
    handle = tiny.pipe.transformer.blocks[6].register_forward_pre_hook(lambda m, args: handed_on.append(args[0]))
    try:
        final = _ensemble_run(tiny, [4, 5], ENSEMBLE_UPDATES).final_latents
    finally:
        handle.remove()
    torch.testing.assert_close(handed_on[0], expected["cond"], rtol=0, atol=1e-6)
    torch.testing.assert_close(handed_on[1], expected["uncond"], rtol=0, atol=1e-6)
    assert not torch.allclose(handed_on[0][0], handed_on[0][1])  # members keep what they brought in
    torch.testing.assert_close(final, _replay(tiny, 5, expected), rtol=1e-5, atol=1e-5)


def test_last_layer_mode_matches_the_reference(tiny, plain_batch):
    _, states = plain_batch
    expected = {p: _mean(s[5]).float().expand_as(s[5]).contiguous() for p, s in states.items()}
    final = _ensemble_run(tiny, [4, 5], ENSEMBLE_LAST_LAYER).final_latents
    torch.testing.assert_close(final, _replay(tiny, 5, expected), rtol=1e-5, atol=1e-5)


def test_averaging_two_layers_differs_from_either_alone(tiny):
    both = _ensemble_run(tiny, [4, 5], ENSEMBLE_UPDATES).final_latents
    first = _ensemble_run(tiny, [4], ENSEMBLE_UPDATES).final_latents
    second = _ensemble_run(tiny, [5], ENSEMBLE_UPDATES).final_latents
    scale = both.abs().mean()
    assert (both - first).abs().mean() > 2e-4 * scale
    assert (both - second).abs().mean() > 2e-4 * scale


def test_the_default_mode_is_updates():
    averager = EnsembleAverager(SeedEnsemble(seeds=[0, 1, 2]), [20, 21])
    assert averager.mode == ENSEMBLE_UPDATES and averager.needs_block_input


def test_sequential_mode_is_the_degenerate_reading(tiny):
    # Kept for comparison with batch-hook implementations: [4, 5] collapses to [4].
    both = _ensemble_run(tiny, [4, 5], ENSEMBLE_SEQUENTIAL).final_latents
    first = _ensemble_run(tiny, [4], ENSEMBLE_SEQUENTIAL).final_latents
    torch.testing.assert_close(both, first, rtol=0, atol=1e-6)


@pytest.mark.parametrize("mode", ENSEMBLE_MODES)
def test_an_ensemble_of_identical_seeds_is_the_plain_batch(tiny, mode):
    seeds = [0, 0, 0]
    plain = run_trajectory(tiny, inputs(steps=STEPS, seeds=seeds)).final_latents
    averaged = _ensemble_run(tiny, [4, 5], mode, seeds=seeds).final_latents
    # Bitwise: the float64 mean of identical float32 members, and a zero update correction, are exact.
    assert torch.equal(averaged, plain)


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="mode"):
        EnsembleAverager(SeedEnsemble(seeds=[0, 1]), [1], mode="median")


class HandedOn:
    """What each block receives (the previous block's output after any rewrite), per forward in call order."""

    def __init__(self, model, layer: int):
        self.seen: list[torch.Tensor] = []
        self.handle = model.pipe.transformer.blocks[layer].register_forward_pre_hook(
            lambda module, args: self.seen.append(args[0].clone())
        )

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


@pytest.mark.parametrize("mode", ENSEMBLE_MODES)
def test_the_ensemble_acts_only_at_its_layers_steps_and_passes(tiny, mode):
    # Replaces the old test's "members are equal at the averaged layer", true of the consensus modes only.
    ensemble = SeedEnsemble(seeds=SEEDS, layers=[4], steps=[0], passes="cond")
    with HandedOn(tiny, 4) as into4, HandedOn(tiny, 5) as into5:
        run_trajectory(
            tiny,
            inputs(steps=2, seeds=SEEDS),
            rewrites=[([4], EnsembleAverager(ensemble, [4], mode=mode))],
        )
    cond0, uncond0, cond1 = 0, 1, 2  # forwards: step 0 cond, step 0 uncond, step 1 cond
    assert not torch.equal(into4.seen[cond0][0], into4.seen[cond0][1])  # layer 3 is not averaged
    averaged = into5.seen[cond0]
    if mode == ENSEMBLE_UPDATES:
        expected = into4.seen[cond0].double() + _mean(averaged - into4.seen[cond0])
        torch.testing.assert_close(averaged, expected.float(), rtol=0, atol=1e-6)
        assert not torch.allclose(averaged[0], averaged[1])
    else:
        # Bitwise: every member's state is replaced by the one mean tensor.
        assert torch.equal(averaged[0], averaged[1]) and torch.equal(averaged[1], averaged[2])
    assert not torch.allclose(into5.seen[uncond0][0], into5.seen[uncond0][1])  # uncond pass untouched
    assert not torch.allclose(into5.seen[cond1][0], into5.seen[cond1][1])  # step 1 untouched
