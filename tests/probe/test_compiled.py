"""Compiled block forwards keep every probe and rewrite working (hooks stay outside the graph)."""

from __future__ import annotations

import torch

from stepscope.models import load_model
from stepscope.models.compiled import compiled_state, uncompile_blocks
from stepscope.probe import run_trajectory

from .helpers import BlockOutputs, CollectingSink, inputs


def test_compiled_blocks_are_probed_like_eager_ones(tiny):
    compiled = load_model("tiny", compile=True)
    assert compiled.describe()["compile"] == {"transformer": "compiled"}
    sink = CollectingSink()
    with BlockOutputs(compiled) as direct:
        result = run_trajectory(compiled, inputs(steps=2), layers=[0, 5], sink=sink)
    assert compiled_state(compiled.pipe.transformer) == "compiled"  # nothing fell back to eager
    first_cond = direct.per_forward(8)[0][1]
    expected = torch.stack([torch.linalg.norm(first_cond[i], dim=-1) for i in (0, 5)], dim=1)
    torch.testing.assert_close(sink.captures[0].layer_norms["cond"], expected, rtol=1e-6, atol=1e-6)
    eager = run_trajectory(tiny, inputs(steps=2), sink=CollectingSink())
    torch.testing.assert_close(result.final_latents, eager.final_latents, rtol=1e-4, atol=1e-4)
    uncompile_blocks(compiled.pipe.transformer)
    assert compiled.describe()["compile"] == {"transformer": "eager"}
