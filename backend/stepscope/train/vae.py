"""Stage 1: train the small AutoencoderKLWan on task videos and frames (reconstruction + light KL), resumably.

Each step codes `batch` whole videos and `image_batch` single frames, each frame alone as a
1-frame clip (the path frame 0, the conditioning frame, always takes: Wan trains its VAE on images
and videos). `finish_vae` then measures the latent statistics (per-channel mean and std of the
posterior modes over training videos) and writes them into a copy's config as `latents_mean` /
`latents_std`, where every Wan pipeline reads them to normalise latents.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKLWan
from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

from stepscope.train.build import build_vae_for
from stepscope.train.config import TrainConfig
from stepscope.train.data import model_range
from stepscope.train.loop import LoopRecord, Stop, run_loop

STATS_BATCH = 64  # videos per encode when measuring the latent statistics
STATS_VIDEOS = 3000  # at most this many videos for the statistics (spread over the families)


def kl_to_standard_normal(posterior) -> torch.Tensor:
    """Mean KL(posterior ‖ N(0, 1)) per latent element (diffusers' `kl()` sums only over dims 1-3 of 5-D latents)."""
    return 0.5 * (posterior.mean.pow(2) + posterior.var - 1.0 - posterior.logvar).float().mean()


def reconstruction_loss(vae: AutoencoderKLWan, videos: torch.Tensor, kl_weight: float, generator) -> torch.Tensor:
    """`latent_frame_mse` between videos in [−1, 1] and the unclamped decode of a posterior sample,
    plus `kl_weight`·KL(posterior ‖ N(0, 1))."""
    posterior = vae.encode(videos).latent_dist
    decoded = decode_unclamped(vae, posterior.sample(generator=generator))
    return latent_frame_mse(decoded, videos) + kl_weight * kl_to_standard_normal(posterior)


def decode_unclamped(vae: AutoencoderKLWan, z: torch.Tensor) -> torch.Tensor:
    """`vae.decode(z)` before its final clamp to [−1, 1], for training.

    The clamp passes no gradient where the decoder overshoots: a floor pixel at +1 costs nothing at 1.5, and a
    ball that should appear on that floor (green channel −0.69) gets no gradient while the decoder says 1.5.
    Trained through the clamp, the VAE drew each 4-frame chunk's last frame in all four (the trajectory ball
    lost in frames 1-3, its error frozen at 215/255 for 75 steps on the same 4 videos; docs/training.md).
    Mirrors diffusers' `AutoencoderKLWan._decode` (untiled; tests/train check it equals `decode` once clamped).
    """
    if vae.use_tiling:
        raise ValueError("decode_unclamped: a tiled VAE (the training VAEs are small and untiled)")
    vae.clear_cache()
    x = vae.post_quant_conv(z)
    frames = []
    for i in range(z.shape[2]):
        vae._conv_idx = [0]
        frames.append(
            vae.decoder(x[:, :, i : i + 1], feat_cache=vae._feat_map, feat_idx=vae._conv_idx, first_chunk=i == 0)
        )
    vae.clear_cache()
    out = torch.cat(frames, 2)
    if vae.config.patch_size is not None:
        out = unpatchify(out, patch_size=vae.config.patch_size)
    return out


def latent_frame_mse(decoded: torch.Tensor, videos: torch.Tensor) -> torch.Tensor:
    """MSE of (N, 3, T, H, W) videos with every latent frame weighted alike: the Wan VAE codes frame 0 alone and
    then chunks of 4 frames, so frame 0 counts as much as a whole chunk (a plain pixel mean gives it 1/T and the
    trained VAE drew the conditioning frame worst: MSE 0.038 against ≤ 0.014 for every later frame)."""
    per_frame = (decoded.float() - videos.float()).pow(2).mean(dim=(0, 1, 3, 4))
    chunks = [per_frame[:1], *per_frame[1:].split(4)] if len(per_frame) > 1 else [per_frame]  # a 1-frame clip
    return torch.stack([chunk.mean() for chunk in chunks]).mean()


@torch.no_grad()
def reconstruction_error(vae: AutoencoderKLWan, videos: torch.Tensor) -> float:
    """MSE between `videos` in [−1, 1] and the decode of their posterior modes (deterministic)."""
    decoded = vae.decode(vae.encode(videos).latent_dist.mode(), return_dict=False)[0]
    return float(torch.nn.functional.mse_loss(decoded.float(), videos.float()))


@torch.no_grad()
def measure_latent_stats(vae: AutoencoderKLWan, videos: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the posterior modes of uint8 `videos` (N, T, H, W, 3)."""
    modes = torch.cat(
        [vae.encode(model_range(chunk)).latent_dist.mode().float() for chunk in videos.split(STATS_BATCH)]
    )
    flat = modes.transpose(0, 1).reshape(modes.shape[1], -1)
    return flat.mean(dim=1).tolist(), flat.std(dim=1).clamp_min(1e-4).tolist()


def check_clip_frames(cfg: TrainConfig, frames: int) -> int:
    """The training clip length: whole videos, or windows of 1 + 4k frames no longer than the videos."""
    clip = frames if cfg.vae.clip_frames is None else cfg.vae.clip_frames
    if clip > frames or (clip - 1) % 4:
        raise ValueError(f"vae.clip_frames: {clip} must be 1 + 4k and at most the videos' {frames} frames")
    return clip


def train_vae(
    cfg: TrainConfig,
    vae: AutoencoderKLWan,
    videos: torch.Tensor,
    device: torch.device,
    log=print,
    *,
    resume: dict | None = None,
    stop: Stop | None = None,
    save=None,
) -> tuple[AutoencoderKLWan, LoopRecord]:
    """Train `vae` on uint8 `videos` (N, T, H, W, 3) on `device`; returns it (in training form) and the record.

    `resume` is a checkpoint state this function handed to `save` earlier ({"module", "generator", "loop"});
    `save(state)` receives the whole state to checkpoint, at least every minute and when the loop ends.
    """
    vc = cfg.vae
    vae = vae.to(device).train()
    videos = videos.to(device)
    generator = torch.Generator(device).manual_seed(cfg.seed + 11)
    if resume is not None:
        vae.load_state_dict(resume["module"])
        generator.set_state(resume["generator"].cpu())
    frames = videos.shape[1]
    clip = check_clip_frames(cfg, frames)

    def loss_at(step: int) -> torch.Tensor:
        index = torch.randint(len(videos), (vc.batch,), generator=generator, device=device)
        # One window start per step (a batch is one tensor); each step draws a new one.
        start = int(torch.randint(frames - clip + 1, (1,), generator=generator, device=device))
        clips = model_range(videos[index, start : start + clip])
        loss = reconstruction_loss(vae, clips, vc.kl_weight, generator)
        if vc.image_batch:
            which = torch.randint(len(videos), (vc.image_batch,), generator=generator, device=device)
            frame = torch.randint(frames, (vc.image_batch,), generator=generator, device=device)
            images = model_range(videos[which, frame].unsqueeze(1))  # (B, 3, 1, H, W): each frame coded alone
            loss = loss + reconstruction_loss(vae, images, vc.kl_weight, generator)
        return loss

    def save_state(loop_state: dict) -> None:
        save({"module": vae.state_dict(), "generator": generator.get_state(), "loop": loop_state})

    record = run_loop(
        list(vae.parameters()),
        loss_at,
        device=device,
        lr=vc.lr,
        warmup=vc.warmup,
        max_steps=vc.steps,
        seconds=vc.seconds,
        decay_fraction=vc.decay_fraction,
        log=log,
        name="vae",
        resume=None if resume is None else resume["loop"],
        stop=stop,
        save=None if save is None else save_state,
    )
    return vae.eval(), record


def finish_vae(cfg: TrainConfig, vae: AutoencoderKLWan, videos: torch.Tensor) -> AutoencoderKLWan:
    """A frozen copy of `vae` carrying the latent statistics of (at most `STATS_VIDEOS` of) uint8 `videos`."""
    step = max(1, len(videos) // STATS_VIDEOS)
    mean, std = measure_latent_stats(vae.eval(), videos[::step][:STATS_VIDEOS])
    final = build_vae_for(cfg, latents_mean=mean, latents_std=std)
    final.load_state_dict(vae.state_dict())
    return final.to(next(vae.parameters()).device).eval().requires_grad_(False)
