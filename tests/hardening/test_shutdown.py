"""Every process stops within 10 s of SIGTERM: an idle worker, and a worker in the middle of a job
(whose job then fails, saying why, instead of being left `running`).

No API runs: the test queues the job as the API does (a record, then RQ), so the failure it reads was
recorded by the worker itself, not by the API's janitor."""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor

import redis

from stepscope.config import Settings
from stepscope.jobs import Jobs, enqueue, live_workers
from stepscope.spec import parse_spec
from stepscope.store import new_run_id
from tests.hardening.conftest import Stack
from tests.servers import wait_until

STOP_WITHIN = 10.0


def _stop_time(proc) -> float:
    sent = time.monotonic()
    proc.process.send_signal(signal.SIGTERM)
    proc.process.wait(timeout=STOP_WITHIN + 20)
    return time.monotonic() - sent


def test_idle_and_busy_workers_exit_within_10_s_of_sigterm(stack: Stack):
    with ThreadPoolExecutor(2) as pool:
        idle, busy = pool.map(lambda _: stack.start_worker(), range(2))
    conn = redis.Redis.from_url(stack.redis.url)

    took = _stop_time(idle)
    assert took < STOP_WITHIN, f"idle worker took {took:.1f} s"
    assert "waiting for Redis to come back" not in idle.output()
    assert idle.name not in {w["name"] for w in live_workers(conn)}

    spec = parse_spec({"model": "tiny", "prompt": "stopped midway", "steps": 200, "height": 64, "width": 64})
    jobs, job_id, defaults = Jobs(conn), new_run_id(), Settings()
    jobs.create(job_id, spec.model, spec.model_dump(mode="json"))
    enqueue(conn, job_id, spec.model, defaults.job_timeout, defaults.result_ttl)

    def stepping():
        record = jobs.get(job_id)
        return record["status"] == "running" and record["progress_done"] > 0

    wait_until(stepping, 120, "the job to be denoising")
    took = _stop_time(busy)
    assert took < STOP_WITHIN, f"busy worker took {took:.1f} s"
    record = jobs.get(job_id)
    assert record["status"] == "failed"
    assert "WorkerShutdown" in record["error"] and "SIGTERM" in record["error"]
    assert record["progress_done"] < 200
