"""Shared by the browser tests: the runs they look at, screenshots, opening a job."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

from stepscope import events

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


def open_job(page, service, job_id: str, tab: str = "trajectory") -> None:
    page.goto(f"{service.url}/#/jobs/{job_id}/{tab}")
    page.wait_for_selector(f"section.explorer[data-job='{job_id}']")


class WorkerGate:
    """Lets the service's worker run a job only up to a chosen step: SIGSTOP freezes it there, so what a test checks
    "mid-run" is mid-run for certain, however fast the run is. `hold()` before submitting, `run_to(...)` for each stop;
    leaving the `with` block lets it go on (also on failure: a frozen worker sends no heartbeat, and the janitor's
    patience is 30 s).
    """

    def __init__(self, worker, client):
        self.pid = worker.pid
        self.client = client
        self.stream = None
        self.stopped = False

    def __enter__(self) -> WorkerGate:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
        if self.stream is not None:
            self.stream.close()

    def hold(self) -> None:
        """Freeze the worker now (a job submitted next waits in the queue)."""
        os.kill(self.pid, signal.SIGSTOP)
        self.stopped = True

    def release(self) -> None:
        """Let the worker go on (idempotent)."""
        if self.stopped:
            os.kill(self.pid, signal.SIGCONT)
            self.stopped = False

    def run_to(self, job_id: str, step: int, timeout: float = 120) -> dict:
        """Let the worker run until the job's stream shows baseline step `step` stored, then freeze it; returns that
        step's event. The worker stops a step or two later at most, which is why callers leave many steps after."""
        if self.stream is None:
            self.stream = self.client.events(job_id, timeout=timeout)
        self.release()
        deadline = time.monotonic() + timeout
        for _, event in self.stream:
            if event["type"] == events.STEP and event["trajectory"] == "baseline" and event["index"] >= step:
                self.hold()
                return event
            assert not events.is_final(event), f"the job ended before step {step}: {event}"
            assert time.monotonic() < deadline, f"step {step} not reached within {timeout} s"
        raise AssertionError(f"the stream ended before step {step}")
