"""Stage 2: train the WanTransformer3DModel with flow matching on a pool of task instances encoded by the frozen VAE.

The pool (training seeds only) is encoded once per process: the clean latent x₀ of each
ground-truth video and its 20 conditioning channels. Every step draws a fresh batch from the pool
with fresh noise and a fresh σ, so an instance is seen at many noise levels. The prompt embeddings
are the frozen text encoder's, computed by the pipeline's own `encode_prompt` at the config's
`text_tokens` (the pipeline's max_sequence_length, zero padded), one per family, and the empty
prompt's for classifier-free-guidance dropout. The stage resumes from a checkpoint state (weights,
optional EMA, optimiser, step, random generator) exactly where it stopped.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel

from stepscope.train.config import TrainConfig
from stepscope.train.data import to_model_range
from stepscope.train.flow import condition_latents, encode_normalized, flow_matching_loss
from stepscope.train.loop import LoopRecord, Stop, run_loop

ENCODE_BATCH = 128  # videos per VAE encode when building the pool


@torch.no_grad()
def prompt_embeddings(pipe, prompts: list[str], device: torch.device, text_tokens: int) -> torch.Tensor:
    """(len(prompts), text_tokens, text_dim) exactly as the pipeline computes them at sampling time."""
    embeds, _ = pipe.encode_prompt(
        prompt=prompts,
        do_classifier_free_guidance=False,
        max_sequence_length=text_tokens,
        device=device,
        dtype=torch.float32,
    )
    return embeds


@torch.no_grad()
def encode_pool(
    vae: AutoencoderKLWan, videos: np.ndarray, rows: np.ndarray, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clean latents (N, 16, F', h, w) and conditioning (N, 20, F', h, w) of uint8 `videos[rows]`, on `device`.

    Converted to [−1, 1] a chunk at a time: the whole pool in float32 would not fit in host memory.
    """
    x0, condition = [], []
    for start in range(0, len(rows), ENCODE_BATCH):
        chunk = to_model_range(videos[rows[start : start + ENCODE_BATCH]], device)
        x0.append(encode_normalized(vae, chunk))
        condition.append(condition_latents(vae, chunk))
    return torch.cat(x0), torch.cat(condition)


def compiles_blocks(cfg: TrainConfig, device: torch.device) -> bool:
    """Whether training compiles the transformer's blocks: `compile_blocks`, on CUDA only."""
    return cfg.transformer.compile_blocks and device.type == "cuda"


class Ema:
    """Exponential moving average of parameters; the decay warms up as min(decay, (1 + t) / (10 + t))."""

    def __init__(self, module: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = copy.deepcopy(module).eval().requires_grad_(False)
        self.targets = list(self.shadow.parameters())
        self.sources = list(module.parameters())

    @torch.no_grad()
    def update(self, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(self.targets, [p.detach() for p in self.sources], 1 - decay)


def train_transformer(
    cfg: TrainConfig,
    transformer: WanTransformer3DModel,
    x0: torch.Tensor,
    condition: torch.Tensor,
    family_index: torch.Tensor,
    texts: torch.Tensor,
    negative_text: torch.Tensor,
    device: torch.device,
    log=print,
    *,
    resume: dict | None = None,
    stop: Stop | None = None,
    save=None,
) -> tuple[WanTransformer3DModel, WanTransformer3DModel, LoopRecord]:
    """Train on the encoded pool; returns (trained, shipped) transformers and the loop's record.

    The shipped module is the EMA copy when `ema_decay` is set, else the trained module itself (uncompiled
    weights either way: `compile_repeated_blocks` compiles in place and keeps the state dict's names).
    On CUDA with `compile_blocks` the trained module comes back compiled for the training batch shape.

    `family_index[i]` picks row i's prompt embedding from `texts`; with probability `cfg_dropout` a sample gets
    `negative_text` (the empty prompt) instead. `resume` / `save` as in `stepscope.train.vae.train_vae`.
    """
    tc = cfg.transformer
    transformer = transformer.to(device).train()
    generator = torch.Generator(device).manual_seed(cfg.seed + 21)
    if resume is not None:
        transformer.load_state_dict(resume["module"])
        generator.set_state(resume["generator"].cpu())
    ema = None if tc.ema_decay is None else Ema(transformer, tc.ema_decay)  # before compiling: the EMA stays plain
    if ema is not None and resume is not None:
        ema.shadow.load_state_dict(resume["ema"])
    if compiles_blocks(cfg, device):
        # In place: parameter names and the state dict are unchanged. The first step compiles (~25 s on an H100),
        # inside the stage's time; later steps reuse it (the batch shape never changes).
        transformer.compile_repeated_blocks(fullgraph=True)
    x0, condition, family_index = x0.to(device), condition.to(device), family_index.to(device)
    texts, negative_text = texts.to(device), negative_text.to(device)

    def loss_at(step: int) -> torch.Tensor:
        index = torch.randint(len(x0), (tc.batch,), generator=generator, device=device)
        text = texts[family_index[index]]
        dropped = torch.rand((tc.batch,), generator=generator, device=device) < tc.cfg_dropout
        text = torch.where(dropped.view(-1, 1, 1), negative_text.expand_as(text), text)
        return flow_matching_loss(transformer, x0[index], condition[index], text, cfg=cfg, generator=generator)

    def save_state(loop_state: dict) -> None:
        save(
            {
                "module": transformer.state_dict(),
                "ema": None if ema is None else ema.shadow.state_dict(),
                "generator": generator.get_state(),
                "loop": loop_state,
            }
        )

    record = run_loop(
        list(transformer.parameters()),
        loss_at,
        device=device,
        lr=tc.lr,
        warmup=tc.warmup,
        max_steps=tc.steps,
        seconds=tc.seconds,
        decay_fraction=tc.decay_fraction,
        weight_decay=tc.weight_decay,
        grad_clip=tc.grad_clip,
        after_step=None if ema is None else ema.update,
        log=log,
        name="transformer",
        resume=None if resume is None else resume["loop"],
        stop=stop,
        save=None if save is None else save_state,
    )
    return transformer.eval(), (transformer if ema is None else ema.shadow), record


def fixed_batch_loss(
    cfg: TrainConfig,
    transformer: WanTransformer3DModel,
    x0: torch.Tensor,
    condition: torch.Tensor,
    text: torch.Tensor,
    seed: int = 1234,
) -> float:
    """The flow-matching loss on one fixed batch with fixed noise and σ (to compare before and after training)."""
    generator = torch.Generator(x0.device).manual_seed(seed)
    with torch.no_grad():
        return float(flow_matching_loss(transformer, x0, condition, text, cfg=cfg, generator=generator))
