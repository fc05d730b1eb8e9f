"""Nothing the explorer asks for fails: a running job's final frames and video are asked for only once they are
stored (they used to be asked for on `trajectory_finished`, before the background decode stored them: 404s); and
the API's ReDoc page loads nothing from elsewhere (its bundle named a logo on a CDN)."""

from __future__ import annotations

import os
import signal
from urllib.parse import urlparse

import pytest

from stepscope import events
from tests.e2e.helpers import offline_page, open_job

pytestmark = pytest.mark.browser

# A baseline and a variant: the variant runs while the baseline's final decode is stored (or the worker is frozen).
SPEC = {
    "model": "tiny",
    "prompt": "watched until it ends",
    "steps": 6,
    "height": 48,
    "width": 80,
    "frames": 9,
    "variants": [{"name": "noise2", "interventions": [{"kind": "noise_at_step", "steps": [2], "strength": 0.5}]}],
}


def test_a_running_job_asks_for_nothing_before_it_exists(page, service, client):
    failed: list[str] = []
    page.on("response", lambda r: r.status >= 400 and failed.append(f"{r.status} {urlparse(r.url).path}"))
    worker = service.workers[0]
    os.kill(worker.pid, signal.SIGSTOP)  # the job waits in the queue until the page is open
    frozen = True
    try:
        job = client.submit(SPEC)
        open_job(page, service, job["id"])
        stream = client.events(job["id"], timeout=120)
        os.kill(worker.pid, signal.SIGCONT)
        frozen = False
        # Freeze the worker as soon as the baseline is finished: its final frames may not be stored yet.
        for _, event in stream:
            if event["type"] == events.TRAJECTORY_FINISHED and event["trajectory"] == "baseline":
                os.kill(worker.pid, signal.SIGSTOP)
                frozen = True
                break
            assert not events.is_final(event), event
        page.wait_for_function("() => window.stepscope.view.run.trajectories.get('baseline')?.status === 'finished'")
        page.wait_for_function("() => window.stepscope.view.cache.idle")
        stored = (service.store / job["id"] / "trajectories/baseline/final/video.mp4").exists()
        shown = page.get_attribute("#grid-canvas", "data-final-row") == "yes"
        # The final row appears only with its frames stored (then its decode event has arrived, or soon will).
        assert stored or not shown
        assert failed == [], failed
        os.kill(worker.pid, signal.SIGCONT)
        frozen = False
        for _, event in stream:
            if events.is_final(event):
                break
        page.wait_for_selector(f"section.explorer[data-job='{job['id']}'][data-status='finished']")
        page.wait_for_function("() => document.getElementById('grid-canvas').dataset.finalRow === 'yes'")
        page.wait_for_selector("#final-video", state="visible")
        page.wait_for_function("() => window.stepscope.view.cache.idle")
        assert failed == [], failed
    finally:
        if frozen:
            os.kill(worker.pid, signal.SIGCONT)


def test_redoc_loads_nothing_from_elsewhere(service, browser):
    with offline_page(browser) as (page, blocked):
        page.goto(f"{service.url}/redoc")
        page.wait_for_selector("text=API docs by Redocly", timeout=60_000)
        page.wait_for_selector("h1:has-text('stepscope')", timeout=30_000)
        page.wait_for_load_state("networkidle")
    assert blocked == [], blocked
