"""x̂₀ of the conditional prediction alone, x_s − σ_s·v_cond, against the model's own cond outputs."""

from __future__ import annotations

import pytest
import torch

from stepscope.probe import run_trajectory

from .helpers import CollectingSink, inputs


class ForwardsOf:
    """Every forward of every expert, in call order: (model input, model output)."""

    def __init__(self, model):
        self.calls = []
        self.handles = [module.register_forward_hook(self._hook, with_kwargs=True) for module in model.experts.values()]

    def _hook(self, module, args, kwargs, output):
        self.calls.append((kwargs["hidden_states"].clone(), output[0].clone()))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()


@pytest.mark.parametrize("fixture", ["tiny", "tiny_moe"])
def test_x0_of_the_conditional_prediction(fixture, request):
    model = request.getfixturevalue(fixture)
    steps = 4
    sink = CollectingSink()
    with ForwardsOf(model) as forwards:
        run_trajectory(model, inputs(steps=steps, guidance=5.0, guidance_2=5.0), sink=sink, cond_x0=True)
    scheduler = type(model.pipe.scheduler).from_config(model.pipe.scheduler.config)
    scheduler.set_timesteps(steps)
    assert len(forwards.calls) == 2 * steps  # cond then uncond at every step
    for step, capture in enumerate(sink.captures):
        model_input, v_cond = forwards.calls[2 * step]
        expected = model_input.double() - scheduler.sigmas[step].double() * v_cond.double()
        torch.testing.assert_close(capture.x0_cond.double(), expected, rtol=0, atol=1e-5)
        assert (capture.x0_cond - capture.x0).abs().max() > 1e-3  # guidance moved the guided x̂₀ away


def test_without_guidance_the_conditional_x0_is_the_x0(tiny):
    sink = CollectingSink()
    run_trajectory(tiny, inputs(steps=3, guidance=1.0), sink=sink, cond_x0=True)
    for capture in sink.captures:
        torch.testing.assert_close(capture.x0_cond, capture.x0, rtol=0, atol=1e-6)


def test_the_conditional_x0_is_off_by_default(tiny):
    sink = CollectingSink()
    run_trajectory(tiny, inputs(steps=2), sink=sink)
    assert all(capture.x0_cond is None for capture in sink.captures)
