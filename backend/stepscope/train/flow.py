"""Flow matching as Wan trains it, and the image-to-video conditioning exactly as WanImageToVideoPipeline builds it.

x_σ = (1 − σ)·x₀ + σ·ε, the transformer predicts v = ε − x₀ at timestep σ·1000, and σ is drawn
as u ~ U(0, 1) through the shift the sampler uses, σ = s·u / (1 + (s − 1)·u) (UniPC's
`flow_shift`), so training spends its steps where sampling does. The batched sampler at the
end runs the same UniPC scheduler and classifier-free guidance as the pipeline, many instances
at once (the pipeline's I2V path encodes one image per call); tests/train check it against the
pipeline.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from diffusers import AutoencoderKLWan

from stepscope.train.config import TrainConfig


def latent_stats(vae: AutoencoderKLWan, device, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) from the VAE's config, shaped (1, C, 1, 1, 1)."""
    c = vae.config.z_dim
    mean = torch.tensor(vae.config.latents_mean, device=device, dtype=dtype).view(1, c, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std, device=device, dtype=dtype).view(1, c, 1, 1, 1)
    return mean, std


@torch.no_grad()
def encode_normalized(vae: AutoencoderKLWan, videos: torch.Tensor) -> torch.Tensor:
    """Posterior modes of (N, 3, T, H, W) videos in [−1, 1], normalised as the pipelines do: (z − mean) / std."""
    z = vae.encode(videos).latent_dist.mode()
    mean, std = latent_stats(vae, z.device, z.dtype)
    return (z - mean) / std


def first_frame_videos(videos: torch.Tensor) -> torch.Tensor:
    """The pipeline's conditioning video: each video's first frame followed by zero (mid-grey) frames."""
    condition = torch.zeros_like(videos)
    condition[:, :, 0] = videos[:, :, 0]
    return condition


def first_frame_mask(batch: int, frames: int, latent_frames: int, h: int, w: int, temporal: int) -> torch.Tensor:
    """The 4-channel mask of WanImageToVideoPipeline.prepare_latents, (B, 4, F', h, w): ones on the given frame."""
    mask = torch.zeros(batch, 1, frames, h, w)
    mask[:, :, 0] = 1
    # The first frame is repeated `temporal` times so the frame count divides into latent frames.
    mask = torch.cat([mask[:, :, :1].repeat_interleave(temporal, dim=2), mask[:, :, 1:]], dim=2)
    mask = mask.view(batch, -1, temporal, h, w).transpose(1, 2)
    assert mask.shape[2] == latent_frames
    return mask


def condition_latents(vae: AutoencoderKLWan, videos: torch.Tensor) -> torch.Tensor:
    """The 20 conditioning channels (4 mask + 16 first-frame latent) for (N, 3, T, H, W) videos."""
    image_latents = encode_normalized(vae, first_frame_videos(videos))
    n, _, latent_frames, h, w = image_latents.shape
    temporal = vae.config.scale_factor_temporal
    mask = first_frame_mask(n, videos.shape[2], latent_frames, h, w, temporal).to(image_latents)
    return torch.cat([mask, image_latents], dim=1)


def shifted_sigmas(u: torch.Tensor, shift: float) -> torch.Tensor:
    """The sampler's time shift applied to uniform draws: σ = s·u / (1 + (s − 1)·u)."""
    return shift * u / (1 + (shift - 1) * u)


def flow_matching_loss(
    transformer,
    x0: torch.Tensor,
    condition: torch.Tensor,
    text: torch.Tensor,
    *,
    cfg: TrainConfig,
    generator: torch.Generator,
) -> torch.Tensor:
    """Mean squared error of the predicted velocity against ε − x₀ at a shifted-uniform σ per sample."""
    n = x0.shape[0]
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    u = torch.rand((n,), generator=generator, device=x0.device, dtype=x0.dtype)
    sigma = shifted_sigmas(u, cfg.flow_shift).view(n, 1, 1, 1, 1)
    noisy = (1 - sigma) * x0 + sigma * noise
    timestep = sigma.flatten() * cfg.num_train_timesteps
    velocity = transformer(
        hidden_states=torch.cat([noisy, condition], dim=1),
        timestep=timestep,
        encoder_hidden_states=text,
        return_dict=False,
    )[0]
    return torch.nn.functional.mse_loss(velocity.float(), (noise - x0).float())


@torch.no_grad()
def sample_latents(
    transformer,
    condition: torch.Tensor,
    text: torch.Tensor,
    negative_text: torch.Tensor,
    initial_noise: torch.Tensor,
    *,
    scheduler_like,
    steps: int,
    guidance: float,
    on_step: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Denoise a batch as WanImageToVideoPipeline does (cond then uncond forward, CFG), final latents.

    A fresh scheduler of `scheduler_like`'s class and config runs the steps (the pipeline's own is left alone).
    `on_step(i, x0_estimate)` receives each step's x̂₀ = x_σ − σ·v (v after CFG), as stepscope records it.
    """
    scheduler = type(scheduler_like).from_config(scheduler_like.config)
    scheduler.set_timesteps(steps, device=initial_noise.device)
    latents = initial_noise.float()
    dtype = next(transformer.parameters()).dtype
    for i, t in enumerate(scheduler.timesteps):
        model_input = torch.cat([latents, condition], dim=1).to(dtype)
        timestep = t.expand(latents.shape[0])
        velocity = transformer(
            hidden_states=model_input, timestep=timestep, encoder_hidden_states=text.to(dtype), return_dict=False
        )[0]
        if guidance > 1.0:
            unconditional = transformer(
                hidden_states=model_input,
                timestep=timestep,
                encoder_hidden_states=negative_text.to(dtype),
                return_dict=False,
            )[0]
            velocity = unconditional + guidance * (velocity - unconditional)
        if on_step is not None:
            on_step(i, latents - scheduler.sigmas[i].to(latents.device) * velocity.float())
        latents = scheduler.step(velocity, t, latents, return_dict=False)[0]
    return latents


@torch.no_grad()
def decode_normalized(vae: AutoencoderKLWan, latents: torch.Tensor) -> torch.Tensor:
    """Normalised latents → videos (N, 3, T, H, W) in [−1, 1], as the pipeline's final decode."""
    mean, std = latent_stats(vae, latents.device, torch.float32)
    vae_dtype = next(vae.parameters()).dtype
    return vae.decode((latents.float() * std + mean).to(vae_dtype), return_dict=False)[0]
