"""Faults researchers actually hit: a killed worker, Redis going away, the API restarting.

The tests share one service (persistent Redis, the API, a worker), each leaving it running for the next: the
worker started after the kill in the first test is the one that lives through the Redis outage and the API
restart. The janitor's patience is shortened here (tests/hardening/conftest.py's Stack); its production timing
is checked by tests/hardening/test_streams.py.
"""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis

from stepscope.client import Client
from stepscope.jobs import queue_name
from tests.hardening.conftest import Stack
from tests.servers import wait_until

LONG = {"model": "tiny", "prompt": "a long walk through a maze", "steps": 200, "probes": {"layers": "none"}}


def first_steps(client: Client, job_id: str, count: int) -> list[tuple[str, dict]]:
    seen = []
    for event_id, event in client.events(job_id):
        seen.append((event_id, event))
        if event["type"] == "step" and event["index"] >= count - 1:
            return seen
    raise AssertionError(f"the job ended before {count} steps: {seen[-1]}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """One service for the module: API and Redis up; a test takes the live worker (`stack.worker()`)."""
    shared = Stack(tmp_path_factory.mktemp("faults"))
    try:
        shared.start_api()
        yield shared
    finally:
        shared.stop()


def test_a_killed_worker_fails_its_job_keeps_its_artifacts_and_a_new_worker_goes_on(stack):
    worker = stack.worker()
    assert [w for w in stack.workers if w.alive()] == [worker]  # no other worker may take the next job
    with Client(stack.url) as client:
        job = client.submit(LONG)
        first_steps(client, job["id"], 4)
        worker.process.send_signal(signal.SIGKILL)
        worker.process.wait()
        killed = time.monotonic()
        # The API keeps answering while the job is still marked running.
        assert client.health()["status"] == "ok"
        # The next job waits in the queue while no worker runs; a restarted worker takes it. The new worker loads
        # its model while the janitor waits out its patience.
        nxt = client.submit({**LONG, "steps": 5})
        assert client.job(nxt["id"])["status"] == "queued"
        with ThreadPoolExecutor(1) as pool:
            restarted = pool.submit(stack.start_worker)
            wait_until(lambda: client.job(job["id"])["status"] == "failed", 60, "the lost job to be failed")
            assert time.monotonic() - killed < 60
            record = client.job(job["id"])
            assert "lost" in record["error"] and record["worker"] == worker.name
            events = list(client.events(job["id"]))
            assert events[-1][1]["type"] == "failed" and "lost" in events[-1][1]["error"]
            # Partial artifacts stay, and the run says it is partial.
            manifest = client.manifest(job["id"])
            assert manifest["status"] == "failed" and manifest["partial"] is True
            stored = manifest["trajectories"]["baseline"]["steps"]
            assert len(stored) >= 4
            assert client.artifact(job["id"], stored[0]["artifacts"]["preview"])[:4] == b"\x89PNG"
            restarted.result()
        assert client.wait(nxt["id"], timeout=120)["status"] == "finished"


def test_redis_outage_gives_503_then_recovers_with_queued_jobs_kept(stack):
    stack.worker()
    with Client(stack.url) as client:
        # Jobs for a model no worker serves stay queued across the outage.
        waiting = [client.submit({**LONG, "model": "tiny-moe", "seed": s})["id"] for s in range(3)]
        stack.redis.stop()  # SIGTERM: Redis writes and fsyncs its append-only file before it exits
        for method, path in [("GET", "/api/jobs"), ("GET", f"/api/jobs/{waiting[0]}"), ("GET", "/api/models")]:
            r = httpx.request(method, f"{stack.url}{path}", timeout=10)
            assert r.status_code == 503, (path, r.status_code, r.text)
            assert "Redis" in r.json()["detail"] and r.headers["retry-after"]
        health = httpx.get(f"{stack.url}/api/health", timeout=10)
        assert health.status_code == 503 and health.json()["redis"]["ok"] is False
        r = httpx.post(f"{stack.url}/api/jobs", json={**LONG, "steps": 3}, timeout=10)
        assert r.status_code == 503

        stack.restart_redis()
        stack.wait_healthy()  # the API reconnects by itself
        listed = {j["id"]: j["status"] for j in client.jobs(status="queued")}
        assert set(waiting) <= set(listed)
        conn = redis.Redis.from_url(stack.redis.url)
        assert set(waiting) <= {i.decode() for i in conn.lrange(f"rq:queue:{queue_name('tiny-moe')}", 0, -1)}
        # The worker that lived through the outage takes new work.
        job = client.submit({**LONG, "steps": 4})
        assert client.wait(job["id"], timeout=120)["status"] == "finished"


def test_api_restart_mid_job_loses_no_event(stack):
    stack.worker()
    with Client(stack.url) as client:
        # About 40 s of steps on an idle CPU, many times an API restart; cancelled once the restart is checked.
        job = client.submit({**LONG, "height": 160, "width": 160})
        seen = first_steps(client, job["id"], 5)
        done_before = client.job(job["id"])["progress"]["done"]
    stack.api.stop()
    assert stack.api.process.returncode is not None
    stack.start_api()
    with Client(stack.url) as client:
        record = client.job(job["id"])
        assert record["status"] == "running"
        done_after = record["progress"]["done"]
        assert done_after > done_before  # it ran on while the API was away
        rest, cancelled = [], False
        for event_id, event in client.events(job["id"], last_event_id=seen[-1][0]):
            rest.append((event_id, event))
            if not cancelled and event["type"] == "step" and event["index"] >= done_after - 1:
                client.cancel(job["id"])  # every step made while the API was away has come through
                cancelled = True
        full = list(client.events(job["id"]))
    assert rest[-1][1]["type"] == "cancelled"
    ids = [i for i, _ in seen + rest]
    assert ids == [i for i, _ in full] and len(set(ids)) == len(ids)
    steps = [e["index"] for _, e in seen + rest if e["type"] == "step"]
    assert steps == list(range(len(steps))) and done_after <= len(steps) < 200
