"""A layer swap of all tokens collapses to its last layer, and says so."""

from __future__ import annotations

import torch

from stepscope.probe import run_trajectory
from stepscope.probe.interventions import HiddenStateBank, SwapRecorder, SwapReplayer, layer_swap_warnings
from stepscope.spec import LayerSwap, SourceRun

from .helpers import inputs

TOKENS_PER_FRAME = 16  # the tiny model at 64×64: 4×4 tokens per latent frame


def _swapped_final(model, layers: list[int], frames: list[int] | None = None) -> torch.Tensor:
    swap = LayerSwap(layers=layers, frames=frames, source=SourceRun(seed=7))
    bank = HiddenStateBank()
    try:
        run_trajectory(model, inputs(steps=3, seeds=[7]), rewrites=[(layers, SwapRecorder(swap, bank))])
        replayer = SwapReplayer(swap, bank, TOKENS_PER_FRAME)
        return run_trajectory(model, inputs(steps=3), rewrites=[(layers, replayer)]).final_latents
    finally:
        bank.close()


def test_swapping_all_tokens_of_several_layers_equals_swapping_the_last(tiny):
    # Bitwise: layer 5's output is B's stored tensor in both runs, and everything after it is the same computation.
    assert torch.equal(_swapped_final(tiny, [2, 5]), _swapped_final(tiny, [5]))
    (warning,) = layer_swap_warnings(LayerSwap(layers=[5, 2], source=SourceRun(seed=7)))
    assert "[2, 5]" in warning and "layer 5 alone" in warning


def test_swapping_chosen_frames_of_several_layers_does_not_collapse(tiny):
    both = _swapped_final(tiny, [2, 5], frames=[1])
    last = _swapped_final(tiny, [5], frames=[1])
    assert not torch.allclose(both, last)
    assert layer_swap_warnings(LayerSwap(layers=[2, 5], frames=[1], source=SourceRun(seed=7))) == []
    assert layer_swap_warnings(LayerSwap(layers=[5], source=SourceRun(seed=7))) == []
