"""Every process stops within 10 s of SIGTERM: an idle worker, and a worker in the middle of a job
(whose job then fails, saying why, instead of being left `running`)."""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import redis

from stepscope.jobs import live_workers
from tests.hardening.conftest import Stack
from tests.servers import wait_until

STOP_WITHIN = 10.0


def _stop_time(proc) -> float:
    sent = time.monotonic()
    proc.process.send_signal(signal.SIGTERM)
    proc.process.wait(timeout=STOP_WITHIN + 20)
    return time.monotonic() - sent


def test_idle_and_busy_workers_exit_within_10_s_of_sigterm(stack: Stack):
    stack.start_api()
    with ThreadPoolExecutor(2) as pool:
        idle, busy = pool.map(lambda _: stack.start_worker(), range(2))
    conn = redis.Redis.from_url(stack.redis.url)

    took = _stop_time(idle)
    assert took < STOP_WITHIN, f"idle worker took {took:.1f} s"
    assert "waiting for Redis to come back" not in idle.output()
    assert idle.name not in {w["name"] for w in live_workers(conn)}

    spec = {"model": "tiny", "prompt": "stopped midway", "steps": 200, "height": 64, "width": 64}
    job = httpx.post(f"{stack.url}/api/jobs", json=spec, timeout=30).json()

    def stepping():
        record = httpx.get(f"{stack.url}/api/jobs/{job['id']}", timeout=5).json()
        return record["status"] == "running" and record["progress"]["done"] > 0

    wait_until(stepping, 120, "the job to be denoising")
    took = _stop_time(busy)
    assert took < STOP_WITHIN, f"busy worker took {took:.1f} s"
    record = httpx.get(f"{stack.url}/api/jobs/{job['id']}", timeout=5).json()
    assert record["status"] == "failed"
    assert "WorkerShutdown" in record["error"] and "SIGTERM" in record["error"]
    assert record["progress"]["done"] < 200
