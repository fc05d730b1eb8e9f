"""What one training run is: the model's sizes, the data, the two stages' optimisation, all in one frozen config.

`FULL` is the GPU run that makes the shipped `mini-reasoner`; `SMOKE` is the same code at toy
sizes that the tests run on a CPU in seconds. Sizes are counted without building weights
(`build.parameter_counts` builds the modules on the meta device).

Each stage trains for a fixed number of optimiser steps (`steps`) over as many device calls as it
takes (checkpoint.py); `seconds` instead fixes the step count from a timed warm-up, for a run that
must fit one call. The learning rate warms up, stays flat, and decays over the last
`decay_fraction` of the steps after warm-up (1.0: a cosine over all of them), so a run's length can
still be changed while it is flat (`run.py` refuses a change once the decay has begun).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from stepscope.tasks.core import DIFFICULTIES, family_names

MAX_SHIPPED_BYTES = 40 * 1024 * 1024  # the budget for all shipped weights together (build.shipped_bytes)


@dataclass(frozen=True)
class VaeConfig:
    """A small AutoencoderKLWan (4× temporal, 8× spatial, 16 latent channels, like Wan 2.1's) and its training."""

    base_dim: int = 20
    # Channel multipliers per resolution (64, 32, 16, 8 px): capacity where the 4× temporal (de)compression
    # happens costs little at low resolution. [1, 1, 1, 1] at base 16-32 lost small objects and the first frame
    # (docs/training.md); Wan 2.1's own VAE is [1, 2, 4, 4] at base 96.
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    z_dim: int = 16
    kl_weight: float = 1e-4  # keeps the posterior's variance near 1 without blurring the flat-colour frames
    steps: int = 20000  # optimiser steps of the whole stage, over as many calls as it takes (checkpoint.py)
    seconds: float | None = None  # instead: fix the step count from a timed warm-up to fit this many seconds
    batch: int = 64  # whole videos a step
    # Single frames a step besides the videos, each coded alone as a 1-frame clip (the path frame 0 takes): Wan
    # trains its VAE on images and videos; the conditioning frame was the frame the VAE drew worst.
    image_batch: int = 64
    # Training clips: whole videos (None), or random windows of 1 + 4k frames (cheaper a step). The VAE is causal
    # and codes a video as a first frame, then chunks of 4 frames, each reading a cache of the chunk before; a VAE
    # trained on windows codes only the chunk positions it saw. Measured on the full videos (17 frames): after
    # 5-frame windows frames 5-16 have MSE 0.3-1.5, after 9-frame windows frames 9-16 0.04-0.67 (≤ 0.011 before);
    # after whole videos every frame ≤ 0.014 but frame 0 (0.038). docs/training.md.
    clip_frames: int | None = None
    lr: float = 1e-3
    warmup: int = 100
    decay_fraction: float = 0.2  # flat, then a cosine to zero over the last 20% (see the module docstring)
    videos_per_family: int = 5000  # training seeds per family whose training-part tasks this stage codes (~70%)


@dataclass(frozen=True)
class TransformerConfig:
    """A WanTransformer3DModel for 36-channel image-to-video (Wan 2.1 / 2.2-A14B style) and its training."""

    # Sized so that a checkpoint (weights + AdamW's two moments, 12 bytes a parameter: 31 MiB) travels into a device
    # call beside the repository with its committed VAE (16 MB) and the wheels (7 MB), under the call's 64 MiB.
    num_layers: int = 16
    num_attention_heads: int = 4
    attention_head_dim: int = 28
    ffn_dim: int = 256
    freq_dim: int = 256
    rope_max_seq_len: int = 32
    # (1, 1, 1): one token per 8-px cell and latent frame, as the from-scratch maze solvers that worked (TACIT);
    # Wan's own (1, 2, 2) would put 2×2 cells in one token.
    patch_size: tuple[int, int, int] = (1, 1, 1)
    # The pipeline's max_sequence_length, identical in training, sampling and the service (ModelInfo.text_tokens):
    # the longest family prompt is 173 tokens; Wan's 512 pads 339 zero tokens that every block attends to.
    text_tokens: int = 176
    steps: int = 100000  # over many calls and sessions; the decay starts at 85% (checkpoint.py, run.py)
    seconds: float | None = None
    batch: int = 512
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup: int = 500
    decay_fraction: float = 0.15
    grad_clip: float = 1.0
    # None: the shipped weights are the trained ones, averaged by the final decay. An EMA copy would add a
    # quarter to a checkpoint, which must travel between device calls (≤ 64 MiB with the repository).
    ema_decay: float | None = None
    cfg_dropout: float = 0.1  # share of samples trained on the empty prompt, so classifier-free guidance works
    instances_per_family: int = 20000  # training seeds per family whose training-part tasks form the pool (~70%)
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
    # Every registered task family, by name (the order is the model's family index); a checkpoint keeps its own list.
    families: tuple[str, ...] = field(default_factory=lambda: tuple(family_names()))
    difficulties: tuple[int, ...] = DIFFICULTIES
    size: int = 64  # canvas pixels (the task suite's default picture format)
    frames: int = 17
    flow_shift: float = 3.0  # UniPC's flow_shift at sampling and the shift of the training-time σ draw
    num_train_timesteps: int = 1000
    vae: VaeConfig = field(default_factory=VaeConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    text: TextConfig = field(default_factory=TextConfig)
    generator_workers: int | None = None  # processes generating task instances; None: CPU count − 1

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True)

    def replace(self, **changes) -> TrainConfig:
        """A copy with top-level fields changed; `vae`/`transformer` take dicts of their own fields."""
        for part, cls in (("vae", VaeConfig), ("transformer", TransformerConfig), ("text", TextConfig)):
            if isinstance(changes.get(part), dict):
                changes[part] = dataclasses.replace(getattr(self, part), **_tuples(changes[part]))
            elif part in changes and not isinstance(changes[part], cls):
                raise TypeError(f"{part}: expected a dict or {cls.__name__}")
        return dataclasses.replace(self, **_tuples(changes))

    @classmethod
    def from_json(cls, data: dict) -> TrainConfig:
        """The config `to_json` wrote (a checkpoint's): JSON lists become the tuples the fields hold."""
        return cls().replace(**{k: v for k, v in data.items()})


def _tuples(changes: dict) -> dict:
    """JSON gives lists where the config holds tuples (frozen, comparable): convert them."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in changes.items()}


FULL = TrainConfig()

# The same code at toy sizes: a CPU runs both stages in seconds (tests/train).
SMOKE = TrainConfig(
    name="smoke",
    frames=9,  # the task suite's shortest clip: 3 latent frames (the Wan VAE's backward is slow on a CPU)
    vae=VaeConfig(
        base_dim=4,
        dim_mult=(1, 1, 1, 1),
        steps=4,
        seconds=None,
        batch=1,
        image_batch=2,
        lr=5e-3,
        warmup=1,
        decay_fraction=1.0,
        videos_per_family=2,
        clip_frames=9,
    ),
    transformer=TransformerConfig(
        num_layers=2,
        num_attention_heads=2,
        attention_head_dim=12,
        ffn_dim=32,
        freq_dim=32,
        patch_size=(1, 2, 2),
        text_tokens=176,
        steps=30,
        seconds=None,
        batch=4,
        lr=2e-3,
        warmup=2,
        decay_fraction=1.0,
        ema_decay=0.999,
        instances_per_family=2,
        compile_blocks=False,
    ),
    text=TextConfig(d_model=16, num_layers=1),
    generator_workers=0,
)

CONFIGS = {"full": FULL, "smoke": SMOKE}
