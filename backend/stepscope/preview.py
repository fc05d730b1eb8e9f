"""Latent → pixels: a cheap linear preview for every step, a full VAE decode for chosen steps.

The linear map (RGB = W·z + b over the latent channels, at latent resolution) is fitted per VAE
by least squares against that VAE's own decodes and cached on disk by a fingerprint of the
VAE's config and weights. Applying it costs one tiny matmul on the device, so a preview of
every frame at every step stays off the denoising loop's critical path.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


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
    """A stable id of a VAE's config and weights (a strided sample of every tensor)."""
    h = hashlib.sha256(json.dumps(dict(vae.config), sort_keys=True, default=str).encode())
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


def video_frame_of_latent_frame(latent_frame: int, temporal: int) -> int:
    """The last video frame that a latent frame covers (latent 0 ↔ frame 0, k ↔ frames 4k-3..4k)."""
    return latent_frame * temporal
