"""Shared by the browser tests: the runs they look at, screenshots, opening a job."""

from __future__ import annotations

import re
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "e2e"
VIEWPORT = {"width": 1400, "height": 900}

# The run most browser tests look at: a baseline, a noise_at_step variant and a seed ensemble.
NOISE_STEP = 3
RUN_SPEC = {
    "model": "tiny",
    "prompt": "a ball rolls through a maze",
    "steps": 12,
    "variants": [
        {"name": "noise3", "interventions": [{"kind": "noise_at_step", "steps": [NOISE_STEP], "strength": 0.5}]},
        {"name": "ens", "interventions": [{"kind": "seed_ensemble", "seeds": [0, 1, 2]}]},
    ],
}
# Slow enough on a CPU to watch steps arrive: 100 steps at 128×128×33, about 0.2 s a step (21 s a run) on one idle
# core of a 2-core AMD EPYC, 2-3x that with the other core busy.
LONG_SPEC = {"model": "tiny", "prompt": "a long run to watch", "steps": 100, "height": 128, "width": 128, "frames": 33}


def screenshot(page, name: str) -> Path:
    """Save the viewport as test-output/e2e/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.png"
    page.screenshot(path=str(path))
    return path


def open_job(page, service, job_id: str, tab: str = "trajectory") -> None:
    page.goto(f"{service.url}/#/jobs/{job_id}/{tab}")
    page.wait_for_selector(f"section.explorer[data-job='{job_id}']")
