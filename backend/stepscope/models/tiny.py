"""Tiny Wan pipelines built from config: offline, deterministic, fast on a CPU.

They have the real diffusers classes (WanTransformer3DModel, AutoencoderKLWan, UMT5EncoderModel,
UniPC flow scheduler) at toy sizes, with weights drawn from a fixed seed, so every code path
of stepscope runs on a laptop exactly as it runs on a 14B model: only the numbers are small.
"""

from __future__ import annotations

import string

import torch
from diffusers import (
    AutoencoderKLWan,
    FlowMatchEulerDiscreteScheduler,
    UniPCMultistepScheduler,
    WanImageToVideoPipeline,
    WanPipeline,
    WanTransformer3DModel,
)
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

from stepscope.models.presets import FAULT_TRIGGER, TinyConfig

TEXT_DIM = 32
# The real Wan pipelines pad prompts to 512 tokens; the tiny ones keep that contract.
MAX_TEXT_TOKENS = 512


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A character-level tokenizer built in memory, so that different prompts give different ids."""
    specials = ["<pad>", "</s>", "<unk>"]
    chars = string.ascii_lowercase + string.digits + string.punctuation + " "
    vocab = {tok: i for i, tok in enumerate(specials + list(chars))}
    tok = Tokenizer(WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", vocab["</s>"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def build_text_encoder(
    vocab_size: int, *, d_model: int = TEXT_DIM, d_kv: int = 8, d_ff: int = 64, num_layers: int = 2, num_heads: int = 4
) -> UMT5EncoderModel:
    """A small UMT5 encoder (the tiny model's by default; `d_model` sets its output width)."""
    config = UMT5Config(
        vocab_size=vocab_size,
        d_model=d_model,
        d_kv=d_kv,
        d_ff=d_ff,
        num_layers=num_layers,
        num_heads=num_heads,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=32,
        dropout_rate=0.0,
        feed_forward_proj="gated-gelu",
    )
    return UMT5EncoderModel(config).eval()


def wan_transformer(
    *,
    heads: int,
    head_dim: int,
    ffn_dim: int,
    num_layers: int,
    text_dim: int,
    in_channels: int = 16,
    patch_size: tuple[int, int, int] = (1, 2, 2),
    **extra,
) -> WanTransformer3DModel:
    """A Wan 2.x transformer of the given size with Wan's fixed choices (RMS qk-norm; Wan's 2×2 patches by default)."""
    return WanTransformer3DModel(
        patch_size=tuple(patch_size),
        num_attention_heads=heads,
        attention_head_dim=head_dim,
        in_channels=in_channels,
        out_channels=16,
        text_dim=text_dim,
        ffn_dim=ffn_dim,
        num_layers=num_layers,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        **extra,
    )


def build_transformer(cfg: TinyConfig) -> WanTransformer3DModel:
    in_channels = 36 if cfg.image_to_video else 16  # I2V: latents + 4 mask + 16 image channels
    return wan_transformer(
        heads=cfg.num_attention_heads,
        head_dim=cfg.attention_head_dim,
        ffn_dim=cfg.ffn_dim,
        num_layers=cfg.num_layers,
        text_dim=TEXT_DIM,
        in_channels=in_channels,
        freq_dim=32,
        rope_max_seq_len=cfg.rope_max_seq_len,
    ).eval()


def build_vae(cfg: TinyConfig) -> AutoencoderKLWan:
    return AutoencoderKLWan(
        base_dim=cfg.vae_base_dim,
        z_dim=16,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    ).eval()


def build_scheduler(cfg: TinyConfig):
    if cfg.scheduler == "euler":
        return FlowMatchEulerDiscreteScheduler(shift=cfg.flow_shift)
    if cfg.scheduler == "unipc":
        return UniPCMultistepScheduler(
            prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=cfg.flow_shift
        )
    raise ValueError(f"unknown tiny scheduler {cfg.scheduler!r}")


class FaultyWanPipeline(WanPipeline):
    """A WanPipeline whose transformer fails mid-run on request, to test failure handling."""

    fault_at_forward = 5

    def __call__(self, *args, **kwargs):
        prompt = kwargs.get("prompt", args[0] if args else "") or ""
        if FAULT_TRIGGER not in prompt:
            return super().__call__(*args, **kwargs)
        forwards = {"n": 0}

        def fail(module, inputs):
            forwards["n"] += 1
            if forwards["n"] >= self.fault_at_forward:
                raise RuntimeError("CUDA error: an illegal memory access was encountered (simulated by tiny-faulty)")

        handle = self.transformer.register_forward_pre_hook(fail)
        try:
            return super().__call__(*args, **kwargs)
        finally:
            handle.remove()


def build_tiny_pipeline(cfg: TinyConfig) -> DiffusionPipeline:
    """Build a tiny Wan T2V or I2V pipeline; the same cfg always gives the same weights."""
    # One generator per component keeps weights stable if another component changes size.
    torch.manual_seed(cfg.weight_seed)
    tokenizer = build_tokenizer()
    text_encoder = build_text_encoder(len(tokenizer))
    torch.manual_seed(cfg.weight_seed + 1)
    vae = build_vae(cfg)
    torch.manual_seed(cfg.weight_seed + 2)
    transformer = build_transformer(cfg)
    transformer_2 = None
    if cfg.two_experts:
        torch.manual_seed(cfg.weight_seed + 3)
        transformer_2 = build_transformer(cfg)
    scheduler = build_scheduler(cfg)
    common = dict(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        scheduler=scheduler,
        transformer=transformer,
        transformer_2=transformer_2,
        boundary_ratio=cfg.boundary_ratio,
    )
    if cfg.image_to_video:
        return WanImageToVideoPipeline(image_encoder=None, image_processor=None, **common)
    if cfg.fault_at_forward is not None:
        pipe = FaultyWanPipeline(**common)
        pipe.fault_at_forward = cfg.fault_at_forward
        return pipe
    return WanPipeline(**common)
