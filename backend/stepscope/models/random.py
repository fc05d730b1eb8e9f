"""Real-size Wan pipelines with random weights, built straight on the target device."""

from __future__ import annotations

import torch
from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel

from stepscope.models.presets import RandomConfig
from stepscope.models.tiny import build_text_encoder, build_tokenizer, wan_transformer

TEXT_DIM = 4096  # UMT5-XXL's width: the transformer's text projection expects it


def build_random_transformer(cfg: RandomConfig, device: str) -> WanTransformer3DModel:
    """bf16 weights drawn on the device (a 14B model in seconds), diffusers' fp32 modules in fp32."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = wan_transformer(
                heads=cfg.num_attention_heads,
                head_dim=cfg.attention_head_dim,
                ffn_dim=cfg.ffn_dim,
                num_layers=cfg.num_layers,
                text_dim=TEXT_DIM,
                freq_dim=256,
                rope_max_seq_len=1024,
            )
    finally:
        torch.set_default_dtype(previous)
    keep = set(model._keep_in_fp32_modules or [])
    for name, param in model.named_parameters():
        if keep.intersection(name.split(".")):
            param.data = param.data.float()
    # Default init makes 40 residual blocks explode; damp the residual branches like a trained net.
    with torch.no_grad():
        for block in model.blocks:
            block.attn1.to_out[0].weight.mul_(0.1)
            block.attn2.to_out[0].weight.mul_(0.1)
            block.ffn.net[2].weight.mul_(0.1)
    return model.eval()


def build_random_pipeline(cfg: RandomConfig, device: str) -> WanPipeline:
    torch.manual_seed(cfg.weight_seed)
    tokenizer = build_tokenizer()
    # One layer of the real width: only the shape of its output matters to the transformer.
    text_encoder = build_text_encoder(len(tokenizer), d_model=TEXT_DIM, d_kv=64, d_ff=256, num_layers=1, num_heads=8)
    text_encoder = text_encoder.to(device, torch.bfloat16)
    vae = AutoencoderKLWan().to(device).eval()  # the Wan 2.1 VAE's config, float32 as in Wan's code
    transformer = build_random_transformer(cfg, device)
    transformer_2 = build_random_transformer(cfg, device) if cfg.two_experts else None
    scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=cfg.flow_shift
    )
    return WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        scheduler=scheduler,
        transformer=transformer,
        transformer_2=transformer_2,
        boundary_ratio=cfg.boundary_ratio,
    )
