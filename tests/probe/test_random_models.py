"""Random-weight presets: the real Wan shapes, built without a download (GPU benchmarks use them)."""

from __future__ import annotations

import pytest
import torch

from stepscope.models.presets import PRESETS, WAN_1_3B, WAN_14B, RandomConfig
from stepscope.models.random import build_random_pipeline, build_random_transformer


@pytest.mark.parametrize(("shape", "billions"), [(WAN_1_3B, 1.42), (WAN_14B, 14.29)])
def test_random_presets_have_the_real_parameter_count(shape, billions):
    with torch.device("meta"):
        model = build_random_transformer(RandomConfig(**shape), "meta")
    count = sum(p.numel() for p in model.parameters()) / 1e9
    assert count == pytest.approx(billions, abs=0.01)


def test_a_small_random_pipeline_runs_a_forward_on_cpu():
    cfg = RandomConfig(
        num_attention_heads=2, attention_head_dim=16, ffn_dim=64, num_layers=2, two_experts=True, boundary_ratio=0.5
    )
    pipe = build_random_pipeline(cfg, "cpu")
    assert pipe.transformer_2 is not None and pipe.config.boundary_ratio == 0.5
    block = pipe.transformer.blocks[0]
    assert block.ffn.net[2].weight.dtype == torch.bfloat16
    keep = set(pipe.transformer._keep_in_fp32_modules or [])
    for name, param in pipe.transformer.named_parameters():
        if keep.intersection(name.split(".")):
            assert param.dtype == torch.float32, name
    latents = torch.randn(1, 16, 2, 8, 8, dtype=torch.bfloat16)
    text = torch.randn(1, 8, 4096, dtype=torch.bfloat16)
    with torch.no_grad():
        out = pipe.transformer(latents, torch.tensor([500]), text, return_dict=False)[0]
    assert out.shape == latents.shape and torch.isfinite(out.float()).all()


def test_random_presets_say_what_they_are():
    moe = PRESETS["wan2.2-a14b-random"]
    assert moe.info.experts == ("transformer", "transformer_2") and moe.info.num_layers == 40
    assert PRESETS["wan2.1-1.3b-random"].info.num_layers == 30


def test_random_presets_refuse_another_dtype_before_building():
    from stepscope.models.loading import ModelError, load_model

    with pytest.raises(ModelError, match="bfloat16 only"):
        load_model("wan2.1-1.3b-random", dtype="float32")
    with pytest.raises(ModelError, match="offload"):
        load_model("wan2.1-1.3b-random", step_decode_dtype="bfloat16", offload="model")
