"""What one training run is: the model's sizes, the data, the two stages' optimisation, all in one frozen config.

`FULL` is the GPU run that makes the shipped `mini-reasoner`; `SMOKE` is the same code at toy
sizes that the tests run on a CPU in seconds. Sizes are counted without building weights
(`parameter_counts` builds the modules on the meta device).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

BYTES_PER_PARAMETER = 4  # weights are saved in float32: CPU inference runs in float32
MAX_SHIPPED_BYTES = 40 * 1024 * 1024  # the budget for all shipped weights together


@dataclass(frozen=True)
class VaeConfig:
    """A small AutoencoderKLWan (4× temporal, 8× spatial, 16 latent channels, like Wan 2.1's) and its training."""

    base_dim: int = 16
    z_dim: int = 16
    kl_weight: float = 1e-4  # keeps the posterior's variance near 1 without blurring the flat-colour frames
    steps: int = 3000  # the most optimiser steps; `seconds` may stop the schedule earlier
    seconds: float | None = 250.0  # time budget: the step count is fixed after timing the warm-up (see loop.py)
    batch: int = 128  # on an H100 a step of 128 takes 1.1× the time of 32 (launch-bound; benchmarks/train_speed.py)
    # Training clips: whole videos (None), or random windows of 1 + 4k frames (cheaper a step). The VAE is causal
    # and codes a video as a first frame, then chunks of 4 frames, each reading a cache of the chunk before; a VAE
    # trained on windows codes only the chunk positions it saw. Measured on the full videos (17 frames): after
    # 5-frame windows frames 5-16 have MSE 0.3-1.5, after 9-frame windows frames 9-16 0.04-0.67 (≤ 0.011 before);
    # after whole videos every frame ≤ 0.014 but frame 0 (0.038). docs/training.md.
    clip_frames: int | None = None
    lr: float = 1e-3
    warmup: int = 50
    videos_per_family: int = 1000  # training videos held for this stage (from training seeds)


@dataclass(frozen=True)
class TransformerConfig:
    """A WanTransformer3DModel for 36-channel image-to-video (Wan 2.1 / 2.2-A14B style) and its training."""

    num_layers: int = 16
    num_attention_heads: int = 4
    attention_head_dim: int = 32
    ffn_dim: int = 512
    freq_dim: int = 256
    rope_max_seq_len: int = 32
    steps: int = 20000
    seconds: float | None = 160.0
    batch: int = 1024  # compiled, 1024 samples a step take 1.06× the time of 256 on an H100 (train_speed.py)
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup: int = 200
    grad_clip: float = 1.0
    ema_decay: float = 0.999  # shipped weights are the EMA (decay warms up as (1+t)/(10+t))
    cfg_dropout: float = 0.1  # share of samples trained on the empty prompt, so classifier-free guidance works
    instances_per_family: int = 20000  # the training pool: fresh noise and time every step, instances reused
    compile_blocks: bool = True  # CUDA only: diffusers' regional compilation of the 16 blocks (compile_repeated_blocks)

    @property
    def dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim


@dataclass(frozen=True)
class TextConfig:
    """The frozen random small UMT5 of the tiny presets (models/tiny.py), kept frozen: the prompt names the family."""

    d_model: int = 32
    num_layers: int = 2


@dataclass(frozen=True)
class TrainConfig:
    """One whole training run: data, VAE stage, transformer stage, the sampler the pipeline ships with."""

    name: str = "full"
    seed: int = 0
    families: tuple[str, ...] = ("maze", "pattern", "trajectory")
    difficulties: tuple[int, ...] = (1, 2, 3)
    size: int = 64  # canvas pixels (the task suite's default picture format)
    frames: int = 17
    flow_shift: float = 3.0  # UniPC's flow_shift at sampling and the shift of the training-time σ draw
    num_train_timesteps: int = 1000
    vae: VaeConfig = field(default_factory=VaeConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    text: TextConfig = field(default_factory=TextConfig)
    generator_workers: int | None = None  # processes generating task instances; None: CPU count − 1
    reserved_held_out: int = 1000  # per family: training drops instances equal to one of these held-out ones

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True)

    def replace(self, **changes) -> TrainConfig:
        """A copy with top-level fields changed; `vae`/`transformer` take dicts of their own fields."""
        for part, cls in (("vae", VaeConfig), ("transformer", TransformerConfig), ("text", TextConfig)):
            if isinstance(changes.get(part), dict):
                changes[part] = dataclasses.replace(getattr(self, part), **changes[part])
            elif part in changes and not isinstance(changes[part], cls):
                raise TypeError(f"{part}: expected a dict or {cls.__name__}")
        return dataclasses.replace(self, **changes)


FULL = TrainConfig()

# The same code at toy sizes: a CPU runs both stages in seconds (tests/train).
SMOKE = TrainConfig(
    name="smoke",
    frames=9,  # the task suite's shortest clip: 3 latent frames (the Wan VAE's backward is slow on a CPU)
    vae=VaeConfig(base_dim=4, steps=4, seconds=None, batch=1, lr=5e-3, warmup=1, videos_per_family=2, clip_frames=9),
    transformer=TransformerConfig(
        num_layers=2,
        num_attention_heads=2,
        attention_head_dim=12,
        ffn_dim=32,
        freq_dim=32,
        steps=30,
        seconds=None,
        batch=4,
        lr=2e-3,
        warmup=2,
        instances_per_family=2,
        compile_blocks=False,
    ),
    text=TextConfig(d_model=16, num_layers=1),
    generator_workers=0,
    reserved_held_out=4,
)

CONFIGS = {"full": FULL, "smoke": SMOKE}


def parameter_counts(cfg: TrainConfig) -> dict[str, int]:
    """Parameters of each shipped component, counted on the meta device (no memory, no time)."""
    import torch

    from stepscope.train.build import build_text_encoder_for, build_transformer_for, build_vae_for

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
