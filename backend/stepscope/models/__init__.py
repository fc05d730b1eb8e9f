"""Model presets and loading: `load_model(name)` gives a resident pipeline with its ModelInfo."""

import os

# transformers warns at import that torchvision is absent (the Wan pipelines never need it).
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from stepscope.models.registry import (  # noqa: E402
    PRESETS,
    LoadedModel,
    ModelError,
    ModelInfo,
    Preset,
    load_model,
    model_info,
)

__all__ = ["PRESETS", "LoadedModel", "ModelError", "ModelInfo", "Preset", "load_model", "model_info"]
