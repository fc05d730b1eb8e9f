"""Shared fixtures: tiny models built once per session, scratch run directories."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the suite may reach the network


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
