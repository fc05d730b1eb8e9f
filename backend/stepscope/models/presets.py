"""Model presets and what is known about each model without loading it (no torch here,
so the API can check specs without importing the model stack)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class TinyConfig:
    """Sizes of one tiny pipeline; every field is a real diffusers/transformers config value."""

    image_to_video: bool = False
    two_experts: bool = False
    boundary_ratio: float | None = None
    scheduler: str = "unipc"  # "unipc" (Wan's default) or "euler" (FlowMatchEulerDiscrete)
    flow_shift: float = 3.0
    num_layers: int = 8
    num_attention_heads: int = 2
    attention_head_dim: int = 16
    ffn_dim: int = 64
    vae_base_dim: int = 8
    weight_seed: int = 0
    rope_max_seq_len: int = 32  # token positions per axis (frames, height, width) the rotary embedding covers
    # Fault injection for testing the service: a prompt containing FAULT_TRIGGER makes the
    # transformer raise a CUDA-like error at this forward (cond and uncond count separately).
    fault_at_forward: int | None = None


FAULT_TRIGGER = "[fault]"


@dataclass(frozen=True)
class RandomConfig:
    """A real-size Wan architecture with random weights: GPU benchmarks and tests, no download.

    The transformer has the real shape; the VAE is the Wan 2.1 VAE's config; the text encoder
    is a one-layer UMT5 of the real width (4096), since only its output shape matters here.
    """

    num_attention_heads: int
    attention_head_dim: int
    ffn_dim: int
    num_layers: int
    two_experts: bool = False
    boundary_ratio: float | None = None
    flow_shift: float = 3.0
    weight_seed: int = 0


@dataclass(frozen=True)
class ModelInfo:
    """What the spec checks need to know about a model, without its weights."""

    task: str  # "t2v" or "i2v"
    experts: tuple[str, ...]  # ("transformer",) or ("transformer", "transformer_2")
    num_layers: int
    boundary_ratio: float | None = None
    patch_size: tuple[int, int, int] = (1, 2, 2)
    vae_temporal: int = 4
    vae_spatial: int = 8
    latent_channels: int = 16
    rope_max_seq_len: int = (
        1024  # the transformer's rotary table: at most this many tokens per axis (diffusers' default)
    )
    # Text tokens the prompt is padded to (the pipeline's max_sequence_length): a model sees at sampling the length
    # it was trained with. Wan's 512; a model trained here may say less (models/loading.py MODEL_SETTINGS_FILE).
    text_tokens: int = 512

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> ModelInfo:
        data = dict(data)
        data["experts"] = tuple(data["experts"])
        data["patch_size"] = tuple(data["patch_size"])
        return cls(**data)


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    source: str  # "tiny" or a Hugging Face id
    info: ModelInfo
    tiny: TinyConfig | None = None
    random: RandomConfig | None = None
    dtype: str = "bfloat16"
    flow_shift: float | None = None  # override the scheduler's shift (Wan: 3.0 at 480p, 5.0 at 720p)
    defaults: dict = field(default_factory=dict)  # suggested height/width/frames/steps


def _tiny(name: str, description: str, cfg: TinyConfig, task: str = "t2v") -> Preset:
    experts = ("transformer", "transformer_2") if cfg.two_experts else ("transformer",)
    info = ModelInfo(
        task=task,
        experts=experts,
        num_layers=cfg.num_layers,
        boundary_ratio=cfg.boundary_ratio,
        rope_max_seq_len=cfg.rope_max_seq_len,
    )
    return Preset(
        name,
        description,
        "tiny",
        info,
        tiny=cfg,
        dtype="float32",
        defaults={"height": 64, "width": 64, "frames": 17, "steps": 20},
    )


_REAL_DEFAULTS = {"height": 480, "width": 832, "frames": 81, "steps": 50}


def _random(name: str, description: str, cfg: RandomConfig) -> Preset:
    experts = ("transformer", "transformer_2") if cfg.two_experts else ("transformer",)
    info = ModelInfo(task="t2v", experts=experts, num_layers=cfg.num_layers, boundary_ratio=cfg.boundary_ratio)
    return Preset(name, description, "random-weights", info, random=cfg, defaults=_REAL_DEFAULTS)


WAN_1_3B = dict(num_attention_heads=12, attention_head_dim=128, ffn_dim=8960, num_layers=30)
WAN_14B = dict(num_attention_heads=40, attention_head_dim=128, ffn_dim=13824, num_layers=40)

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        _tiny("tiny", "Tiny Wan T2V built from config: CPU, offline, seconds (default)", TinyConfig()),
        _tiny(
            "tiny-moe",
            "Tiny two-expert Wan2.2-style T2V (boundary 0.875)",
            TinyConfig(two_experts=True, boundary_ratio=0.875),
        ),
        _tiny(
            "tiny-i2v",
            "Tiny two-expert Wan2.2-style I2V (36 input channels, boundary 0.9)",
            TinyConfig(image_to_video=True, two_experts=True, boundary_ratio=0.9),
            task="i2v",
        ),
        _tiny("tiny-euler", "Tiny Wan T2V with FlowMatchEulerDiscreteScheduler", TinyConfig(scheduler="euler")),
        _tiny(
            "tiny-faulty",
            f"Tiny Wan T2V that raises a simulated CUDA error mid-run when the prompt contains '{FAULT_TRIGGER}'",
            TinyConfig(fault_at_forward=5),
        ),
        _random(
            "wan2.1-1.3b-random", "Wan 2.1 1.3B architecture with random weights (GPU tests)", RandomConfig(**WAN_1_3B)
        ),
        _random(
            "wan-14b-random", "Wan 14B expert architecture with random weights (GPU tests)", RandomConfig(**WAN_14B)
        ),
        _random(
            "wan2.2-a14b-random",
            "Two random-weight Wan 14B experts, boundary 0.875 (GPU tests)",
            RandomConfig(**WAN_14B, two_experts=True, boundary_ratio=0.875),
        ),
        Preset(
            "wan2.1-t2v-1.3b",
            "Wan 2.1 text-to-video 1.3B",
            "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
            ModelInfo(task="t2v", experts=("transformer",), num_layers=30),
            flow_shift=3.0,
            defaults=_REAL_DEFAULTS,
        ),
        Preset(
            "wan2.2-ti2v-5b",
            "Wan 2.2 text(+image)-to-video 5B (48-channel VAE, 16x spatial)",
            "Wan-AI/Wan2.2-TI2V-5B-Diffusers",
            ModelInfo(task="t2v", experts=("transformer",), num_layers=30, vae_spatial=16, latent_channels=48),
            flow_shift=5.0,
            defaults={"height": 704, "width": 1280, "frames": 121, "steps": 50},
        ),
        Preset(
            "wan2.2-i2v-a14b",
            "Wan 2.2 image-to-video A14B: two 40-layer experts, boundary 0.9",
            "Wan-AI/Wan2.2-I2V-A14B-Diffusers",
            ModelInfo(task="i2v", experts=("transformer", "transformer_2"), num_layers=40, boundary_ratio=0.9),
            defaults=_REAL_DEFAULTS,
        ),
        Preset(
            "vbvr-wan2.2",
            "VBVR-Wan2.2: Wan2.2-I2V-A14B fine-tuned for video reasoning",
            "Video-Reason/VBVR-Wan2.2",
            ModelInfo(task="i2v", experts=("transformer", "transformer_2"), num_layers=40, boundary_ratio=0.9),
            defaults=_REAL_DEFAULTS,
        ),
    ]
}
