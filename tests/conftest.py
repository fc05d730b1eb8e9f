"""Shared fixtures: tiny models built once per session, scratch run directories."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the suite may reach the network
# One OpenMP/MKL thread per process, inherited by the workers and servers the tests start: the suite
# runs several torch processes on 2 cores, and with another process keeping a core busy two spinning
# OpenMP threads made a tiny run 10-20x slower (2.2 s → 47 s measured). Not a product default: the
# thread count is how this machine is shared, and `stepscope` itself keeps torch's own choice.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def tiny():
    from stepscope.models import load_model

    return load_model("tiny")


@pytest.fixture(scope="session")
def tiny_moe():
    from stepscope.models import load_model

    return load_model("tiny-moe")


@pytest.fixture(scope="session")
def tiny_euler():
    from stepscope.models import load_model

    return load_model("tiny-euler")


@pytest.fixture(scope="session")
def tiny_i2v():
    from stepscope.models import load_model

    return load_model("tiny-i2v")


@pytest.fixture
def run_dir(tmp_path):
    from stepscope.store import RunDir

    return RunDir.at(str(tmp_path / "run"))


@pytest.fixture(autouse=True)
def _preview_cache(tmp_path_factory, monkeypatch):
    # One fitted preview cache for the whole session, never the user's ~/.cache.
    cache = tmp_path_factory.getbasetemp() / "preview-cache"
    monkeypatch.setenv("STEPSCOPE_CACHE_DIR", str(cache))
    from stepscope.config import get_settings

    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
