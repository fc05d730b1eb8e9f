"""The dependency direction the docs promise: the API process never imports the model stack."""

from __future__ import annotations

import subprocess
import sys


def test_the_api_does_not_import_torch_or_diffusers():
    code = (
        "import sys, stepscope.api.app, stepscope.client, stepscope.jobs, stepscope.events; "
        "heavy = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_the_probe_engine_does_not_import_the_service():
    code = (
        "import sys, stepscope.probe, stepscope.models.loading; "
        "service = [m for m in ('fastapi', 'rq', 'redis', 'stepscope.api', 'stepscope.worker') if m in sys.modules]; "
        "assert not service, service"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_the_run_format_is_a_leaf():
    """Every side reads and writes run directories through run_format: it imports nothing of theirs."""
    code = (
        "import sys, stepscope.run_format; "
        "mods = [m for m in sys.modules if m.startswith('stepscope.') and m != 'stepscope.run_format'] "
        "+ [m for m in ('torch', 'numpy', 'fastapi', 'redis') if m in sys.modules]; "
        "assert not mods, mods"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_model_loading_does_not_import_the_preview_fitting():
    code = "import sys, stepscope.models.loading; assert 'stepscope.preview' not in sys.modules"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
