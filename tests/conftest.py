"""Shared fixtures: tiny models built once per session, scratch run directories; how xdist groups the tests."""

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


# Session fixtures of tests/conftest.py (the tiny models) are cheap enough to build in each xdist process.
_PER_PROCESS_SCOPES = ("", "tests")


@pytest.hookimpl(tryfirst=True)  # before xdist turns xdist_group marks into node ids
def pytest_collection_modifyitems(config, items):
    """Tests sharing an expensive fixture run in one xdist process, so it is built once (`--dist loadgroup`).

    A test that uses a module- or session-scoped fixture defined below tests/ (a running service, a
    browser, a built wheel, a trained model) joins the group of the widest such fixture: the directory
    of its conftest.py for a session fixture, the module for a module fixture. Every other test is
    scheduled on its own, to whichever process is free.
    """
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            continue
        shared = {
            defs[-1].baseid
            for name in info.names_closure
            if (defs := info.name2fixturedefs.get(name))
            and defs[-1].scope in ("session", "package", "module", "class")
            and defs[-1].baseid not in _PER_PROCESS_SCOPES
        }
        if shared:
            item.add_marker(pytest.mark.xdist_group(min(shared, key=len)))


# Runs after xdist has put each grouped test's group into its node id.
@pytest.hookimpl(trylast=True, specname="pytest_collection_modifyitems")
def _check_xdist_kept_the_groups(config, items):
    # pytest 9.2 + xdist 3.8 drop the groups silently (pytest-dev/pytest-xdist#1386): every test would still
    # pass, but each process would start its own services and browser and the suite would take far longer.
    if not (os.environ.get("PYTEST_XDIST_WORKER") and config.getvalue("loadgroup")):
        return
    lost = [i.nodeid for i in items if i.get_closest_marker("xdist_group") and "@" not in i.nodeid]
    if lost:
        raise pytest.UsageError(
            f"pytest-xdist ignored the xdist_group of {lost[0]} (and {len(lost) - 1} more): "
            "use pytest<9.2 (pyproject.toml's test extra) or run without -n"
        )


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
    # One fitted preview cache for the whole run, never the user's ~/.cache. Under xdist the processes share it
    # (their base temp dirs are siblings); entries are written to a temporary file and renamed into place.
    base = tmp_path_factory.getbasetemp()
    cache = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "preview-cache"
    monkeypatch.setenv("STEPSCOPE_CACHE_DIR", str(cache))
    from stepscope.config import get_settings

    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
