"""The wheel that `pip install .` builds from the Docker build context ships the explorer.

backend/stepscope/web is a link to frontend/ (plain static files), shipped as `stepscope.web`; these tests
build the wheel from exactly the files .dockerignore lets through, then install it elsewhere
and ask the app where its frontend is; and setuptools builds both wheels without a warning.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.deploy.conftest import REPO, copy_docker_context


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wheel")
    context = copy_docker_context(root / "context")
    out = root / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w", str(out), "."],
        cwd=context,
        check=True,
        capture_output=True,
        timeout=120,
    )
    (built,) = out.glob("stepscope-*.whl")
    return built


def test_wheel_ships_the_frontend(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        "stepscope/web/" + p.relative_to(REPO / "frontend").as_posix()
        for p in (REPO / "frontend").rglob("*")
        if p.is_file() and "tests" not in p.relative_to(REPO / "frontend").parts
    }
    assert "stepscope/web/index.html" in expected
    assert expected <= names
    assert not [n for n in names if n.startswith("stepscope/web/tests/")]


def test_wheel_ships_every_backend_module(wheel):
    # pyproject.toml lists the packages: a new subpackage missing from that list fails here.
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(REPO / "backend").as_posix() for p in (REPO / "backend" / "stepscope").rglob("*.py")}
    assert modules <= names, sorted(modules - names)


def test_installed_wheel_serves_its_own_frontend(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    code = (
        "import stepscope, sys; from stepscope.api.app import frontend_dir; "
        "print(stepscope.__file__); print(frontend_dir())"
    )
    # The wheel's copy comes first on the path; dependencies come from this environment.
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    module, web = out.stdout.split()
    assert Path(module).is_relative_to(target)
    assert Path(web) == target / "stepscope" / "web" and (Path(web) / "index.html").is_file()


# Builds both wheels through setuptools' own PEP 517 hooks, as pip does, and lists every warning they raise (pip prints
# them to whoever runs `pip install -e .`, e.g. the first `make run`).
BUILD_WITH_WARNINGS = """
import json, sys, warnings
from setuptools import build_meta
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    getattr(build_meta, sys.argv[1])(sys.argv[2])
print(json.dumps([f"{w.category.__name__}: {str(w.message).strip().splitlines()[0]}" for w in caught]))
"""


@pytest.mark.parametrize("hook", ["build_editable", "build_wheel"])
def test_setuptools_builds_without_warnings(tmp_path, hook):
    context = copy_docker_context(tmp_path / "context")
    out = subprocess.run(
        [sys.executable, "-c", BUILD_WITH_WARNINGS, hook, str(tmp_path / "dist")],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    import json

    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
