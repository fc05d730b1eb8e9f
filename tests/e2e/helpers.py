"""Shared by the browser tests: the runs they look at, screenshots, opening a job (WorkerGate: tests/servers.py)."""

from __future__ import annotations

import json
import re
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from stepscope.events import FINAL_STATUSES

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
# A run to watch while it runs: WorkerGate stops the worker mid-run, so its speed does not matter (40 steps at 48×80×9,
# about 2.3 s on one idle core of a 2-core AMD EPYC). Height, width and frames differ from the spec's defaults.
LONG_SPEC = {"model": "tiny", "prompt": "a long run to watch", "steps": 40, "height": 48, "width": 80, "frames": 9}


def screenshot(page, name: str) -> Path:
    """Save the viewport as test-output/e2e/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.png"
    page.screenshot(path=str(path))
    return path


@contextmanager
def offline_page(browser):
    """A page of its own context on which every request that would leave 127.0.0.1 is aborted; yields (page, the
    list of aborted URLs)."""
    blocked: list[str] = []

    def local_only(route):
        if urlparse(route.request.url).hostname == "127.0.0.1" or route.request.url.startswith("data:"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context = browser.new_context()
    try:
        page = context.new_page()
        page.route("**/*", local_only)
        yield page, blocked
    finally:
        context.close()


def open_job(page, service, job_id: str, tab: str = "trajectory") -> None:
    """Open the job's explorer and wait until it shows the job: for a job that has ended, until its whole event
    stream has arrived (the explorer follows a run's newest step until then, so a step chosen earlier would be
    overtaken); for any other, until the job is loaded."""
    with urllib.request.urlopen(f"{service.url}/api/jobs/{job_id}", timeout=30) as response:
        status = json.load(response)["status"]
    page.goto(f"{service.url}/#/jobs/{job_id}/{tab}")
    explorer = f"section.explorer[data-job='{job_id}']"
    if status in FINAL_STATUSES:
        page.wait_for_selector(f"{explorer} #stream-state[data-state='ended']", state="attached")
    else:
        page.wait_for_selector(f"{explorer}[data-status]:not([data-status='loading'])", state="attached")
