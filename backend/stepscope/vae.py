"""The VAE as stepscope uses it: latent normalization, scale factors, a fingerprint, full decodes.

Kept apart from the preview map so model loading (scale factors) and the recorder (decodes)
need not import the preview fitting, and the preview fitting builds on the same helpers.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import torch


def latent_stats(vae) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (mean, std) that the pipelines normalize latents with, shaped (1, C, 1, 1, 1)."""
    z_dim = vae.config.z_dim
    mean = torch.tensor(vae.config.latents_mean, dtype=torch.float32).view(1, z_dim, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std, dtype=torch.float32).view(1, z_dim, 1, 1, 1)
    return mean, std


def vae_scale_factors(vae) -> tuple[int, int]:
    """(temporal, spatial) downsampling of the VAE."""
    cfg = vae.config
    temporal = getattr(cfg, "scale_factor_temporal", None) or 2 ** sum(cfg.temperal_downsample)
    spatial = getattr(cfg, "scale_factor_spatial", None) or 2 ** len(cfg.temperal_downsample)
    return int(temporal), int(spatial)


def vae_fingerprint(vae) -> str:
    """A stable id of a VAE's config and weights (a strided sample of every tensor).

    The config's private keys are left out: `_name_or_path` says where it was loaded from, and diffusers lists
    `_use_default_values` from a set, in an order that changes with each process's hash seed (the preview map's
    cache, keyed on this id, missed in every new process)."""
    public = {key: value for key, value in dict(vae.config).items() if not key.startswith("_")}
    h = hashlib.sha256(json.dumps(public, sort_keys=True, default=str).encode())
    for name, tensor in sorted(vae.state_dict().items()):
        flat = tensor.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // 1024)][:1024]
        h.update(name.encode())
        h.update(sample.to("cpu", torch.float32).numpy().tobytes())
    return h.hexdigest()[:24]


class NonFiniteDecode(ArithmeticError):
    """A decode produced inf or NaN (e.g. float16 overflow in a VAE trained in float32)."""


@torch.no_grad()
def decode_latents(vae, latents: torch.Tensor, require_finite: bool = False) -> np.ndarray:
    """Full-quality decode of normalized latents (B, C, F, H, W) → uint8 frames (B, T, H, W, 3).

    With `require_finite`, a decode containing inf or NaN raises NonFiniteDecode instead of
    being clamped into frames.
    """
    mean, std = latent_stats(vae)
    device = next(vae.parameters()).device
    z = latents.to(device, torch.float32) * std.to(device) + mean.to(device)
    video = vae.decode(z.to(vae.dtype), return_dict=False)[0]  # (B, 3, T, H, W) in [-1, 1]
    if require_finite and not bool(torch.isfinite(video).all()):
        raise NonFiniteDecode(f"the {str(video.dtype).removeprefix('torch.')} VAE decode has inf or NaN values")
    video = ((video.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return video.permute(0, 2, 3, 4, 1).cpu().numpy()


def decode_step_latents(step_vae, vae, latents: torch.Tensor) -> tuple[np.ndarray, str]:
    """Decode a step's latents with `step_vae` (a lower-precision copy, or None for `vae`).

    If the copy overflows (inf or NaN), the step is decoded again with `vae`, the VAE as loaded.
    Returns the frames and the name of the dtype of the VAE that made them ("float32").
    """
    if step_vae is not None and step_vae is not vae:
        try:
            return decode_latents(step_vae, latents, require_finite=True), dtype_name(step_vae)
        except NonFiniteDecode:
            pass
    return decode_latents(vae, latents), dtype_name(vae)


def dtype_name(vae) -> str:
    return str(vae.dtype).removeprefix("torch.")
