"""Named model presets and the one loading path every model goes through.

`tiny*` presets are built from config (offline, CPU, seconds). Every other preset, a Hugging
Face id or a local diffusers directory is loaded with `DiffusionPipeline.from_pretrained`;
the tests exercise that same path on a tiny pipeline saved with `save_pretrained`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from stepscope.models.tiny import TinyConfig, build_tiny_pipeline
from stepscope.preview import vae_scale_factors

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
OFFLOAD_MODES = ("none", "model", "sequential")


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

    @property
    def size_multiple(self) -> int:
        return self.vae_spatial * self.patch_size[1]

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
    dtype: str = "bfloat16"
    flow_shift: float | None = None  # override the scheduler's shift (Wan: 3.0 at 480p, 5.0 at 720p)
    defaults: dict = field(default_factory=dict)  # suggested height/width/frames/steps


def _tiny(name: str, description: str, cfg: TinyConfig, task: str = "t2v") -> Preset:
    experts = ("transformer", "transformer_2") if cfg.two_experts else ("transformer",)
    info = ModelInfo(task=task, experts=experts, num_layers=cfg.num_layers, boundary_ratio=cfg.boundary_ratio)
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


class ModelError(ValueError):
    """A model that cannot be found or loaded; the message says why and what to do."""


@dataclass
class LoadedModel:
    """A pipeline resident on its device, with what the probes need to know about it."""

    name: str
    pipe: object  # a diffusers WanPipeline or WanImageToVideoPipeline
    info: ModelInfo
    device: str
    dtype: str
    offload: str = "none"
    source: str = "tiny"

    @property
    def experts(self) -> dict[str, torch.nn.Module]:
        return {name: getattr(self.pipe, name) for name in self.info.experts}

    def describe(self) -> dict:
        sched = self.pipe.scheduler
        return {
            "name": self.name,
            "source": self.source,
            "pipeline": type(self.pipe).__name__,
            "scheduler": {"class": type(sched).__name__, "config": _jsonable(dict(sched.config))},
            "device": self.device,
            "dtype": self.dtype,
            "offload": self.offload,
            **self.info.to_json(),
        }


def _jsonable(config: dict) -> dict:
    return json.loads(json.dumps(config, default=str))


def info_from_pipeline(pipe) -> ModelInfo:
    experts = tuple(n for n in ("transformer", "transformer_2") if getattr(pipe, n, None) is not None)
    first = getattr(pipe, experts[0])
    temporal, spatial = vae_scale_factors(pipe.vae)
    return ModelInfo(
        task="i2v" if "ImageToVideo" in type(pipe).__name__ else "t2v",
        experts=experts,
        num_layers=len(first.blocks),
        boundary_ratio=pipe.config.get("boundary_ratio"),
        patch_size=tuple(first.config.patch_size),
        vae_temporal=temporal,
        vae_spatial=spatial,
        latent_channels=pipe.vae.config.z_dim,
    )


def info_from_directory(path: Path) -> ModelInfo:
    """Read a local diffusers directory's configs (no weights) into a ModelInfo."""
    index = json.loads((path / "model_index.json").read_text())
    experts = tuple(n for n in ("transformer", "transformer_2") if (index.get(n) or [None])[0])
    tcfg = json.loads((path / experts[0] / "config.json").read_text())
    vcfg = json.loads((path / "vae" / "config.json").read_text())
    temporal = vcfg.get("scale_factor_temporal") or 2 ** sum(vcfg.get("temperal_downsample", [False, True, True]))
    spatial = vcfg.get("scale_factor_spatial") or 2 ** len(vcfg.get("temperal_downsample", [0, 0, 0]))
    return ModelInfo(
        task="i2v" if "ImageToVideo" in index.get("_class_name", "") else "t2v",
        experts=experts,
        num_layers=int(tcfg["num_layers"]),
        boundary_ratio=index.get("boundary_ratio"),
        patch_size=tuple(tcfg.get("patch_size", (1, 2, 2))),
        vae_temporal=int(temporal),
        vae_spatial=int(spatial),
        latent_channels=int(vcfg.get("z_dim", 16)),
    )


def model_info(name: str) -> ModelInfo | None:
    """Info for a preset or local directory without loading it; None for an unknown hub id."""
    if name in PRESETS:
        return PRESETS[name].info
    path = Path(name).expanduser()
    if (path / "model_index.json").is_file():
        return info_from_directory(path)
    return None


def load_model(
    name: str,
    device: str = "cpu",
    dtype: str | None = None,
    offload: str = "none",
    flow_shift: float | None = None,
) -> LoadedModel:
    """Load a preset, a local diffusers directory or a Hugging Face id onto `device`."""
    if offload not in OFFLOAD_MODES:
        raise ModelError(f"offload must be one of {OFFLOAD_MODES}, got {offload!r}")
    if dtype is not None and dtype not in DTYPES:
        raise ModelError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    preset = PRESETS.get(name)
    if preset is not None and preset.tiny is not None:
        pipe = build_tiny_pipeline(preset.tiny)
        dtype = dtype or preset.dtype
        if dtype != "float32":
            _cast_tiny(pipe, DTYPES[dtype])
        source = "tiny"
    else:
        source = preset.source if preset else name
        dtype = dtype or (preset.dtype if preset else "bfloat16")
        pipe = _from_pretrained(source, DTYPES[dtype])
        flow_shift = flow_shift if flow_shift is not None else (preset.flow_shift if preset else None)
    if flow_shift is not None:
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, flow_shift=flow_shift)
    _place(pipe, device, offload)
    pipe.set_progress_bar_config(disable=True)
    return LoadedModel(
        name=name, pipe=pipe, info=info_from_pipeline(pipe), device=device, dtype=dtype, offload=offload, source=source
    )


def _from_pretrained(source: str, torch_dtype: torch.dtype):
    from diffusers import DiffusionPipeline

    is_dir = Path(source).expanduser().is_dir()
    if not is_dir and "/" not in source:
        raise ModelError(
            f"unknown model {source!r}: use a preset ({', '.join(PRESETS)}), "
            "a Hugging Face id (org/name) or a local diffusers directory"
        )
    # The Wan VAE is numerically fragile in half precision; the reference code keeps it in float32.
    dtypes = {"default": torch_dtype, "vae": torch.float32}
    try:
        return DiffusionPipeline.from_pretrained(str(Path(source).expanduser()) if is_dir else source, dtype=dtypes)
    except (OSError, ValueError) as exc:
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        hint = " (HF_HUB_OFFLINE is set: download the weights first)" if offline else ""
        raise ModelError(f"could not load {source!r}{hint}: {exc}") from exc


def _cast_tiny(pipe, torch_dtype: torch.dtype) -> None:
    """Cast a tiny pipeline's denoisers, keeping the modules diffusers keeps in float32."""
    for name in ("transformer", "transformer_2"):
        module = getattr(pipe, name, None)
        if module is None:
            continue
        module.to(torch_dtype)
        keep = set(getattr(module, "_keep_in_fp32_modules", None) or [])
        for param_name, param in module.named_parameters():
            if keep.intersection(param_name.split(".")):
                param.data = param.data.float()


def _place(pipe, device: str, offload: str) -> None:
    if offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        pipe.to(device)
