"""Stage 1: train the small AutoencoderKLWan on task videos (reconstruction + light KL), then measure latent statistics.

The statistics (per-channel mean and std of the posterior modes over the training videos) go
into the VAE's config as `latents_mean` / `latents_std`, where every Wan pipeline reads them to
normalise latents; the transformer is trained on latents normalised the same way.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKLWan

from stepscope.train.build import build_vae_for
from stepscope.train.config import TrainConfig
from stepscope.train.loop import LoopRecord, run_loop

STATS_BATCH = 64  # videos per encode when measuring the latent statistics


def reconstruction_loss(vae: AutoencoderKLWan, videos: torch.Tensor, kl_weight: float, generator) -> torch.Tensor:
    """`latent_frame_mse` between videos in [−1, 1] and the decode of a posterior sample,
    plus `kl_weight`·KL(posterior ‖ N(0, 1))."""
    posterior = vae.encode(videos).latent_dist
    z = posterior.sample(generator=generator)
    decoded = vae.decode(z, return_dict=False)[0]
    # Mean KL per latent element (diffusers' `kl()` sums only over dims 1-3 of 5-D latents).
    kl = 0.5 * (posterior.mean.pow(2) + posterior.var - 1.0 - posterior.logvar).float().mean()
    return latent_frame_mse(decoded, videos) + kl_weight * kl


def latent_frame_mse(decoded: torch.Tensor, videos: torch.Tensor) -> torch.Tensor:
    """MSE of (N, 3, T, H, W) videos with every latent frame weighted alike: the Wan VAE codes frame 0 alone and
    then chunks of 4 frames, so frame 0 counts as much as a whole chunk (a plain pixel mean gives it 1/T and the
    trained VAE drew the conditioning frame worst: MSE 0.038 against ≤ 0.014 for every later frame)."""
    per_frame = (decoded.float() - videos.float()).pow(2).mean(dim=(0, 1, 3, 4))
    chunks = [per_frame[:1], *per_frame[1:].split(4)]
    return torch.stack([chunk.mean() for chunk in chunks]).mean()


@torch.no_grad()
def reconstruction_error(vae: AutoencoderKLWan, videos: torch.Tensor) -> float:
    """MSE between `videos` in [−1, 1] and the decode of their posterior modes (deterministic)."""
    decoded = vae.decode(vae.encode(videos).latent_dist.mode(), return_dict=False)[0]
    return float(torch.nn.functional.mse_loss(decoded.float(), videos.float()))


@torch.no_grad()
def measure_latent_stats(vae: AutoencoderKLWan, videos: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the posterior modes of `videos` (N, 3, T, H, W)."""
    modes = torch.cat([vae.encode(chunk).latent_dist.mode().float() for chunk in videos.split(STATS_BATCH)])
    flat = modes.transpose(0, 1).reshape(modes.shape[1], -1)
    return flat.mean(dim=1).tolist(), flat.std(dim=1).clamp_min(1e-4).tolist()


def train_vae(
    cfg: TrainConfig, vae: AutoencoderKLWan, videos: torch.Tensor, device: torch.device, log=print
) -> tuple[AutoencoderKLWan, LoopRecord]:
    """Train `vae` on `videos` (N, 3, T, H, W) in [−1, 1] on `device`; return a VAE carrying its latent statistics."""
    vc = cfg.vae
    vae = vae.to(device).train()
    videos = videos.to(device)
    generator = torch.Generator(device).manual_seed(cfg.seed + 11)

    frames = videos.shape[2]
    clip = frames if vc.clip_frames is None else vc.clip_frames
    if clip > frames or (clip - 1) % 4:
        raise ValueError(f"vae.clip_frames: {clip} must be 1 + 4k and at most the videos' {frames} frames")

    def loss_at(step: int) -> torch.Tensor:
        index = torch.randint(len(videos), (vc.batch,), generator=generator, device=device)
        # One window start per step (a batch is one tensor); each step draws a new one.
        start = int(torch.randint(frames - clip + 1, (1,), generator=generator, device=device))
        return reconstruction_loss(vae, videos[index, :, start : start + clip], vc.kl_weight, generator)

    record = run_loop(
        list(vae.parameters()),
        loss_at,
        device=device,
        lr=vc.lr,
        warmup=vc.warmup,
        max_steps=vc.steps,
        seconds=vc.seconds,
        log=log,
        name="vae",
    )
    vae.eval()
    mean, std = measure_latent_stats(vae, videos)
    final = build_vae_for(cfg, latents_mean=mean, latents_std=std)
    final.load_state_dict(vae.state_dict())
    return final.to(device).eval().requires_grad_(False), record
