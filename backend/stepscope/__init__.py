"""stepscope: watch a video diffusion transformer think, step by step and layer by layer."""

import os

__version__ = "0.1.0"

# transformers warns at import that torchvision is absent; the Wan pipelines never need it.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def load_run(path):
    """Load a run directory (local path or fsspec URL) into numpy-backed objects."""
    from stepscope.run import load_run as _load_run

    return _load_run(path)


def __getattr__(name):
    if name == "Client":
        from stepscope.client import Client

        return Client
    raise AttributeError(name)


__all__ = ["Client", "__version__", "load_run"]
