"""Model presets and loading: `load_model(name)` gives a resident pipeline with its ModelInfo.

Presets and ModelInfo import without torch (the API uses them to check specs); the loading
functions import the model stack on first use.
"""

from stepscope.models.presets import PRESETS, ModelInfo, Preset, TinyConfig

_LAZY = {"LoadedModel", "ModelError", "load_model"}


def __getattr__(name):
    if name in _LAZY:
        from stepscope.models import loading

        return getattr(loading, name)
    raise AttributeError(name)


__all__ = ["PRESETS", "LoadedModel", "ModelError", "ModelInfo", "Preset", "TinyConfig", "load_model"]
