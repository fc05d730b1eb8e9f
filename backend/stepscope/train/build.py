"""The trained model's components and pipeline: the real diffusers Wan classes at the sizes of a TrainConfig.

The pipeline is `WanImageToVideoPipeline` in the Wan 2.1 / 2.2-A14B style: the transformer
reads 36 channels (16 noisy latent + 4 first-frame mask + 16 latent of the first frame followed
by blank frames), one expert, no CLIP image encoder. Diffusers samples it unchanged, so every
stepscope probe (x̂₀ from UniPC, block hooks, interventions) sees it as it sees `tiny-i2v`.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanImageToVideoPipeline, WanTransformer3DModel
from transformers import UMT5EncoderModel

from stepscope.models.tiny import build_text_encoder, build_tokenizer, wan_transformer
from stepscope.train.config import TrainConfig

I2V_IN_CHANNELS = 36  # 16 noisy latent + 4 mask + 16 condition latent
VAE_TEMPORAL_DOWNSAMPLE = [False, True, True]  # 4× in time, as Wan 2.1's VAE


def build_text_encoder_for(cfg: TrainConfig) -> UMT5EncoderModel:
    """The small UMT5 of the tiny presets at `cfg.text` sizes; its weights are drawn, then kept frozen."""
    return build_text_encoder(
        len(build_tokenizer()), d_model=cfg.text.d_model, num_layers=cfg.text.num_layers, num_heads=4
    )


def build_vae_for(
    cfg: TrainConfig, latents_mean: list[float] | None = None, latents_std: list[float] | None = None
) -> AutoencoderKLWan:
    """A small AutoencoderKLWan; the latent statistics go into its config, where the pipelines read them."""
    stats = {}
    if latents_mean is not None:
        stats = {"latents_mean": list(latents_mean), "latents_std": list(latents_std)}
    return AutoencoderKLWan(
        base_dim=cfg.vae.base_dim,
        z_dim=cfg.vae.z_dim,
        dim_mult=list(cfg.vae.dim_mult),
        num_res_blocks=1,
        temperal_downsample=VAE_TEMPORAL_DOWNSAMPLE,
        **stats,
    )


def build_transformer_for(cfg: TrainConfig) -> WanTransformer3DModel:
    t = cfg.transformer
    return wan_transformer(
        heads=t.num_attention_heads,
        head_dim=t.attention_head_dim,
        ffn_dim=t.ffn_dim,
        num_layers=t.num_layers,
        text_dim=cfg.text.d_model,
        in_channels=I2V_IN_CHANNELS,
        freq_dim=t.freq_dim,
        rope_max_seq_len=t.rope_max_seq_len,
        patch_size=t.patch_size,
    )


def build_scheduler(cfg: TrainConfig) -> UniPCMultistepScheduler:
    """Wan's default sampler: UniPC on flow sigmas with the config's shift."""
    return UniPCMultistepScheduler(
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        flow_shift=cfg.flow_shift,
        num_train_timesteps=cfg.num_train_timesteps,
    )


def seeded_components(cfg: TrainConfig):
    """Fresh (untrained) text encoder, VAE and transformer; one seed offset each, so resizing one keeps the others."""
    torch.manual_seed(cfg.seed)
    text_encoder = build_text_encoder_for(cfg).eval().requires_grad_(False)
    torch.manual_seed(cfg.seed + 1)
    vae = build_vae_for(cfg)
    torch.manual_seed(cfg.seed + 2)
    transformer = build_transformer_for(cfg)
    return text_encoder, vae, transformer


def assemble_pipeline(
    cfg: TrainConfig, text_encoder: UMT5EncoderModel, vae: AutoencoderKLWan, transformer: WanTransformer3DModel
) -> WanImageToVideoPipeline:
    """The shipped pipeline: `save_pretrained` of this is what `stepscope.models.load_model(<dir>)` loads."""
    pipe = WanImageToVideoPipeline(
        tokenizer=build_tokenizer(),
        text_encoder=text_encoder.eval(),
        vae=vae.eval(),
        scheduler=build_scheduler(cfg),
        transformer=transformer.eval(),
        transformer_2=None,
        image_encoder=None,
        image_processor=None,
        boundary_ratio=None,
        expand_timesteps=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


BYTES_PER_PARAMETER = 4  # weights are saved in float32: CPU inference runs in float32


def parameter_counts(cfg: TrainConfig) -> dict[str, int]:
    """Parameters of each shipped component, counted on the meta device (no memory, no time)."""
    with torch.device("meta"):
        parts = {
            "text_encoder": build_text_encoder_for(cfg),
            "vae": build_vae_for(cfg),
            "transformer": build_transformer_for(cfg),
        }
    return {name: sum(p.numel() for p in module.parameters()) for name, module in parts.items()}


def shipped_bytes(cfg: TrainConfig) -> int:
    """Bytes of all saved weights: parameters × 4 (float32 safetensors; headers are a few kB more)."""
    return sum(parameter_counts(cfg).values()) * BYTES_PER_PARAMETER
