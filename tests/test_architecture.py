"""The dependency direction the docs promise: the API process never imports the model stack.

Each rule is checked in a fresh interpreter, and interpreters are few: each one that imports torch and diffusers costs
~10 s. The API side gets one of its own. The model side is imported in stages in one more, recording `sys.modules`
after each stage. That is as sound as one interpreter per rule: a module once imported stays in `sys.modules`, so a
module absent after a stage was imported neither by it nor before it; and what precedes a stage is only what its rule
allows (run_format, a leaf, before model loading; model loading, which the probe rule imports itself, before the probe).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# The model side's stages, in import order: each entry is (stage name, modules it imports).
MODEL_SIDE_STAGES = [
    ("run_format", ["stepscope.run_format"]),
    ("model_loading", ["stepscope.models.loading"]),
    ("probe_engine", ["stepscope.probe", "stepscope.models.loading"]),
]


def modules_after_each_stage(stages: list[tuple[str, list[str]]]) -> dict[str, list[str]]:
    """Import the stages in order in a fresh interpreter; the names in `sys.modules` after each stage."""
    code = (
        "import importlib, json, sys\n"
        f"stages = {stages!r}\n"
        "seen = {}\n"
        "for name, modules in stages:\n"
        "    for module in modules:\n"
        "        importlib.import_module(module)\n"
        "    seen[name] = sorted(sys.modules)\n"
        "print(json.dumps(seen))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])  # the last line: imports may print before it


@pytest.fixture(scope="module")
def model_side() -> dict[str, list[str]]:
    return modules_after_each_stage(MODEL_SIDE_STAGES)


def test_the_api_does_not_import_torch_or_diffusers():
    # Its own interpreter: the API side imports fastapi and redis, which the model side's rules forbid.
    api = ["stepscope.api.app", "stepscope.client", "stepscope.jobs", "stepscope.events"]
    loaded = modules_after_each_stage([("api", api)])["api"]
    assert set(api) <= set(loaded)  # the check saw the modules it is about
    heavy = [m for m in ("torch", "diffusers", "transformers") if m in loaded]
    assert not heavy, heavy


def test_the_run_format_is_a_leaf(model_side):
    """Every side reads and writes run directories through run_format: it imports nothing of theirs."""
    loaded = model_side["run_format"]
    assert "stepscope.run_format" in loaded
    mods = [m for m in loaded if m.startswith("stepscope.") and m != "stepscope.run_format"]
    mods += [m for m in ("torch", "numpy", "fastapi", "redis") if m in loaded]
    assert not mods, mods


def test_model_loading_does_not_import_the_preview_fitting(model_side):
    loaded = model_side["model_loading"]
    assert "stepscope.models.loading" in loaded and "torch" in loaded  # the stage did import the model stack
    assert "stepscope.preview" not in loaded


def test_the_probe_engine_does_not_import_the_service(model_side):
    loaded = model_side["probe_engine"]
    assert {"stepscope.probe", "stepscope.models.loading"} <= set(loaded)
    service = [m for m in ("fastapi", "rq", "redis", "stepscope.api", "stepscope.worker") if m in loaded]
    assert not service, service
