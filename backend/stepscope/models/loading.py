"""The one loading path every model goes through.

`tiny*` presets are built from config (offline, CPU, seconds). Every other preset, a Hugging
Face id or a local diffusers directory is loaded with `DiffusionPipeline.from_pretrained`;
the tests exercise that same path on a tiny pipeline saved with `save_pretrained`.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers.utils import logging as diffusers_logging

from stepscope.models.compiled import compile_blocks, compiled_state
from stepscope.models.presets import PRESETS, ModelInfo
from stepscope.models.random import build_random_pipeline
from stepscope.models.tiny import build_tiny_pipeline
from stepscope.vae import vae_scale_factors

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
OFFLOAD_MODES = ("none", "model", "sequential")


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
    compile: bool = False
    step_vae: object = None  # a copy of the VAE in another dtype for the decodes of steps; None: pipe.vae

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
            "compile": {name: compiled_state(module) for name, module in self.experts.items()},
            "step_decode_dtype": str(next((self.step_vae or self.pipe.vae).parameters()).dtype).removeprefix("torch."),
            **self.info.to_json(),
        }


def _jsonable(config: dict) -> dict:
    return json.loads(json.dumps(config, default=str))


# Beside model_index.json in a saved pipeline: what the pipeline's own configs cannot say (the text length it
# was trained with). Absent in diffusers' own directories, whose models take the pipelines' defaults.
MODEL_SETTINGS_FILE = "stepscope_model.json"
DEFAULT_TEXT_TOKENS = 512  # the Wan pipelines' max_sequence_length


def write_model_settings(directory: Path, *, text_tokens: int) -> None:
    """Record beside a saved pipeline the settings it must be sampled with."""
    (Path(directory) / MODEL_SETTINGS_FILE).write_text(json.dumps({"text_tokens": int(text_tokens)}, indent=1) + "\n")


def read_model_settings(directory: Path) -> dict:
    """The settings `write_model_settings` wrote, or the defaults; a malformed file is a ModelError naming it."""
    path = Path(directory) / MODEL_SETTINGS_FILE
    if not path.is_file():
        return {"text_tokens": DEFAULT_TEXT_TOKENS}
    try:
        settings = json.loads(path.read_text())
        text_tokens = settings["text_tokens"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f'{path}: expected {{"text_tokens": <int>}}: {exc}') from exc
    if isinstance(text_tokens, bool) or not isinstance(text_tokens, int) or not 1 <= text_tokens <= 4096:
        raise ModelError(f"{path}: text_tokens must be an integer from 1 to 4096, got {text_tokens!r}")
    return {"text_tokens": text_tokens}


def info_from_pipeline(pipe, text_tokens: int = DEFAULT_TEXT_TOKENS) -> ModelInfo:
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
        rope_max_seq_len=first.config.rope_max_seq_len,
        text_tokens=text_tokens,
    )


_STEP_VAE_NEEDS_RESIDENT_VAE = "step_decode_dtype needs offload 'none' (an offloaded VAE cannot be copied)"


def load_model(
    name: str,
    device: str = "cpu",
    dtype: str | None = None,
    offload: str = "none",
    flow_shift: float | None = None,
    compile: bool = False,
    step_decode_dtype: str | None = None,
) -> LoadedModel:
    """Load a preset, a local diffusers directory or a Hugging Face id onto `device`.

    `compile=True` compiles each transformer block's forward (see models/compiled.py).
    `step_decode_dtype` (e.g. "bfloat16") keeps a copy of the VAE in that dtype for the
    full decodes of steps along the way; the final decode always uses the VAE as loaded.
    """
    if offload not in OFFLOAD_MODES:
        raise ModelError(f"offload must be one of {OFFLOAD_MODES}, got {offload!r}")
    if dtype is not None and dtype not in DTYPES:
        raise ModelError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if step_decode_dtype is not None and step_decode_dtype not in DTYPES:
        raise ModelError(f"step_decode_dtype must be one of {sorted(DTYPES)}, got {step_decode_dtype!r}")
    if step_decode_dtype not in (None, "float32") and offload != "none":
        # Refused before loading: a 14B load should not end in this error.
        raise ModelError(_STEP_VAE_NEEDS_RESIDENT_VAE)
    text_tokens = DEFAULT_TEXT_TOKENS
    preset = PRESETS.get(name)
    if preset is not None and preset.random is not None:
        if dtype not in (None, "bfloat16"):
            raise ModelError(f"random-weight preset {name!r} is built in bfloat16 only, got dtype {dtype!r}")
        pipe = build_random_pipeline(preset.random, device)
        dtype = "bfloat16"
        source = preset.source
    elif preset is not None and preset.tiny is not None:
        pipe = build_tiny_pipeline(preset.tiny)
        dtype = dtype or preset.dtype
        if dtype != "float32":
            _cast_tiny(pipe, DTYPES[dtype])
        source = "tiny"
    else:
        source = preset.source if preset else name
        dtype = dtype or (preset.dtype if preset else "bfloat16")
        pipe = _from_pretrained(source, DTYPES[dtype])
        if Path(source).expanduser().is_dir():
            text_tokens = read_model_settings(Path(source).expanduser())["text_tokens"]
        flow_shift = flow_shift if flow_shift is not None else (preset.flow_shift if preset else None)
    if flow_shift is not None:
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, flow_shift=flow_shift)
    _place(pipe, device, offload)
    pipe.set_progress_bar_config(disable=True)
    model = LoadedModel(
        name=name,
        pipe=pipe,
        info=info_from_pipeline(pipe, text_tokens),
        device=device,
        dtype=dtype,
        offload=offload,
        source=source,
    )
    vae_dtype = next(pipe.vae.parameters()).dtype
    if step_decode_dtype is not None and DTYPES[step_decode_dtype] != vae_dtype:
        if offload != "none":
            raise ModelError(_STEP_VAE_NEEDS_RESIDENT_VAE)
        model.step_vae = cast_copy(pipe.vae, DTYPES[step_decode_dtype])
    if compile:
        for module in model.experts.values():
            compile_blocks(module)
        model.compile = True
    return model


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


def cast_copy(vae, dtype: torch.dtype):
    """A copy of `vae` in `dtype`, without diffusers' warning about casting with `to()`
    (AutoencoderKLWan has no modules that must stay in float32)."""
    previous = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        return copy.deepcopy(vae).to(dtype)
    finally:
        diffusers_logging.set_verbosity(previous)


def _place(pipe, device: str, offload: str) -> None:
    if offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        pipe.to(device)
