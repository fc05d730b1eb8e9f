"""Latent → pixels cheaply: a linear preview of every frame at every step (full decodes: stepscope.vae).

The linear map (RGB = W·z + b over the latent channels, at latent resolution) is fitted per VAE
by least squares against that VAE's own decodes and cached on disk by a fingerprint of the
VAE's config and weights. Applying it costs one tiny matmul on the device, so a preview of
every frame at every step stays off the denoising loop's critical path.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from stepscope.vae import decode_latents, latent_stats, vae_fingerprint, vae_scale_factors

__all__ = ["LinearPreview", "decode_latents", "fit_linear_preview", "frame_strip", "linear_preview_for"]


@dataclass
class LinearPreview:
    """RGB ≈ weight @ latent + bias, per latent position; fitted against the VAE's decodes."""

    weight: np.ndarray  # (3, C)
    bias: np.ndarray  # (3,)
    fingerprint: str
    residual_rms: float  # fit error on the fitting set, in [-1, 1] pixel units

    def apply(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, C, F, H, W) normalized latents → (B, F, H, W, 3) uint8 on the same device."""
        w = torch.as_tensor(self.weight, dtype=torch.float32, device=latents.device)
        b = torch.as_tensor(self.bias, dtype=torch.float32, device=latents.device)
        rgb = torch.einsum("bcfhw,rc->bfhwr", latents.float(), w) + b
        return ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)

    def to_json(self) -> dict:
        return {
            "weight": self.weight.tolist(),
            "bias": self.bias.tolist(),
            "fingerprint": self.fingerprint,
            "residual_rms": self.residual_rms,
        }

    @classmethod
    def from_json(cls, data: dict) -> LinearPreview:
        return cls(
            weight=np.asarray(data["weight"], dtype=np.float32),
            bias=np.asarray(data["bias"], dtype=np.float32),
            fingerprint=data["fingerprint"],
            residual_rms=float(data["residual_rms"]),
        )


def _synthetic_videos(n: int, frames: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """Smooth coloured fields that drift over time, in [-1, 1]: (n, 3, frames, size, size)."""
    coarse = torch.rand(n, 3, frames, 4, 4, generator=generator) * 2 - 1
    video = F.interpolate(coarse, size=(frames, size, size), mode="trilinear", align_corners=True)
    ramp = torch.linspace(-1, 1, size)
    shift = torch.rand(n, 3, 1, 1, 1, generator=generator) * 2 - 1
    video = video + 0.3 * shift * ramp.view(1, 1, 1, 1, size)
    return video.clamp(-1, 1)


def _pool_to_latent_grid(video: torch.Tensor, temporal: int, spatial: int) -> torch.Tensor:
    """Average decoded pixels over the frames and patch that each latent position covers."""
    first = video[:, :, :1]
    rest = video[:, :, 1:]
    if rest.shape[2]:
        b, c, t, h, w = rest.shape
        rest = rest.reshape(b, c, t // temporal, temporal, h, w).mean(3)
        video = torch.cat([first, rest], dim=2)
    else:
        video = first
    return F.avg_pool3d(video, kernel_size=(1, spatial, spatial))


@torch.no_grad()
def fit_linear_preview(vae, samples: int = 4, seed: int = 0) -> LinearPreview:
    """Fit the preview map by least squares on (latent, pooled decode) pairs of this VAE.

    The pairs come from encoding smooth synthetic videos (latents like those late in a run) and
    from Gaussian latents (like those early in a run), both decoded by the VAE itself.
    """
    device = next(vae.parameters()).device
    temporal, spatial = vae_scale_factors(vae)
    mean, std = latent_stats(vae)
    mean, std = mean.to(device), std.to(device)
    gen = torch.Generator().manual_seed(seed)
    frames = 2 * temporal + 1
    size = 4 * spatial
    videos = _synthetic_videos(samples, frames, size, gen).to(device, vae.dtype)
    encoded = vae.encode(videos).latent_dist.mode().float()
    normalized_encoded = (encoded - mean) / std
    gaussian = torch.randn(normalized_encoded.shape, generator=gen).to(device)
    latents = torch.cat([normalized_encoded, gaussian])
    decoded = vae.decode((latents * std + mean).to(vae.dtype), return_dict=False)[0].float()
    target = _pool_to_latent_grid(decoded.clamp(-1, 1), temporal, spatial)
    x = latents.permute(0, 2, 3, 4, 1).reshape(-1, latents.shape[1]).cpu().double()
    y = target.permute(0, 2, 3, 4, 1).reshape(-1, 3).cpu().double()
    design = torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64)], dim=1)
    solution = torch.linalg.lstsq(design, y).solution  # (C + 1, 3)
    residual = y - design @ solution
    return LinearPreview(
        weight=solution[:-1].T.float().numpy(),
        bias=solution[-1].float().numpy(),
        fingerprint=vae_fingerprint(vae),
        residual_rms=float(math.sqrt(residual.pow(2).mean().item())),
    )


def linear_preview_for(vae, cache_dir: str | Path | None) -> LinearPreview:
    """The fitted preview of this VAE, from the cache when this exact VAE was fitted before."""
    fingerprint = vae_fingerprint(vae)
    path = Path(cache_dir) / f"linear-preview-{fingerprint}.json" if cache_dir else None
    if path is not None and path.exists():
        try:
            return LinearPreview.from_json(json.loads(path.read_text()))
        except (ValueError, KeyError):
            pass  # a damaged cache entry is refitted below
    preview = fit_linear_preview(vae)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")  # workers may share the cache
        tmp.write_text(json.dumps(preview.to_json()))
        tmp.replace(path)
    return preview


def frame_strip(frames: np.ndarray) -> np.ndarray:
    """(F, H, W, 3) → (H, F·W, 3): all frames of a step side by side in one image."""
    f, h, w, c = frames.shape
    return frames.transpose(1, 0, 2, 3).reshape(h, f * w, c)
