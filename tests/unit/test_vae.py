"""stepscope.vae on the tiny Wan VAE (CPU, float32): scale factors, fingerprint, decodes."""

from __future__ import annotations

import copy

import pytest
import torch

from stepscope.models.presets import TinyConfig
from stepscope.models.tiny import build_vae
from stepscope.vae import decode_latents, decode_step_latents, latent_stats, vae_fingerprint, vae_scale_factors


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(1)
    return build_vae(TinyConfig())


def test_scale_factors_and_stats_of_the_wan_vae(vae):
    assert vae_scale_factors(vae) == (4, 8)
    mean, std = latent_stats(vae)
    assert mean.shape == std.shape == (1, 16, 1, 1, 1)
    # Bitwise: the same list of floats converted to float32 the same way.
    assert torch.equal(mean.flatten(), torch.tensor(vae.config.latents_mean, dtype=torch.float32))


def test_fingerprint_follows_the_weights(vae):
    assert vae_fingerprint(vae) == vae_fingerprint(copy.deepcopy(vae))
    changed = copy.deepcopy(vae)
    with torch.no_grad():
        next(changed.parameters()).add_(1.0)
    assert vae_fingerprint(changed) != vae_fingerprint(vae)


def test_fingerprint_ignores_where_and_how_the_config_was_loaded(vae, tmp_path):
    # A VAE loaded back from disk (another `_name_or_path`; diffusers' `_use_default_values`, listed from a set in
    # an order that changes with the process's hash seed) is the same VAE.
    from diffusers import AutoencoderKLWan
    from diffusers.configuration_utils import FrozenDict

    vae.save_pretrained(tmp_path / "a")
    loaded = AutoencoderKLWan.from_pretrained(tmp_path / "a")
    assert loaded.config["_name_or_path"] != vae.config.get("_name_or_path")
    config = dict(loaded.config)
    config["_use_default_values"] = ["z", "y", "x"]
    loaded._internal_dict = FrozenDict(config)
    reordered = copy.deepcopy(loaded)
    reordered._internal_dict = FrozenDict({**config, "_use_default_values": ["x", "y", "z"]})
    assert vae_fingerprint(loaded) == vae_fingerprint(reordered) == vae_fingerprint(vae)


def test_decode_denormalizes_then_gives_uint8_frames(vae):
    latents = torch.randn(1, 16, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    frames = decode_latents(vae, latents)
    assert frames.shape == (1, 5, 32, 32, 3) and frames.dtype.name == "uint8"  # 2 latent frames → 4·2−3
    mean, std = latent_stats(vae)
    with torch.no_grad():
        direct = vae.decode(latents * std + mean, return_dict=False)[0]
    expected = ((direct.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1).numpy()
    assert (frames == expected).all()


def test_a_step_decode_that_overflows_is_redone_with_the_vae_as_loaded(vae):
    broken = copy.deepcopy(vae)
    with torch.no_grad():
        broken.decoder.conv_out.weight.fill_(float("inf"))
    latents = torch.randn(1, 16, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    frames, dtype = decode_step_latents(broken, vae, latents)
    assert dtype == "float32"
    assert (frames == decode_latents(vae, latents)).all()
