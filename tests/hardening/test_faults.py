"""Faults researchers actually hit: a killed worker, Redis going away, the API restarting.

The tests share one service (persistent Redis, the API, a worker), each leaving it running for the next: the
worker started after the kill in the first test is the one that lives through the Redis outage and the API
restart. The janitor's patience is shortened here (tests/hardening/conftest.py's Stack); its production timing
is checked by tests/hardening/test_streams.py.
"""

from __future__ import annotations

import signal
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis

from stepscope.client import Client
from stepscope.config import Settings
from stepscope.jobs import Jobs, queue_name
from tests.hardening.conftest import JANITOR_EVERY, LOST_AFTER, Stack, epoch
from tests.servers import StreamEvents, WorkerGate, wait_until

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
    conn = redis.Redis.from_url(stack.redis.url)
    with Client(stack.url) as client, WorkerGate(worker, client) as gate:
        gate.hold()
        job = client.submit(LONG)
        gate.run_to(job["id"], 3)  # frozen mid-run: the kill lands while the job runs, however fast the machine
        worker.process.send_signal(signal.SIGKILL)
        worker.process.wait()
        # The API keeps answering while the job is still marked running.
        assert client.health()["status"] == "ok"
        # The next job waits in the queue while no worker runs; a restarted worker takes it. The new worker loads
        # its model while the janitor waits out its patience.
        nxt = client.submit({**LONG, "steps": 5})
        assert client.job(nxt["id"])["status"] == "queued"
        with ThreadPoolExecutor(1) as pool:
            restarted = pool.submit(stack.start_worker)
            wait_until(lambda: client.job(job["id"])["status"] == "failed", 60, "the lost job to be failed")
            record = client.job(job["id"])
            assert "lost" in record["error"] and record["worker"] == worker.name
            # Failed LOST_AFTER after the job's last heartbeat, within about a janitor round of it: the service's own
            # times (the worker's heartbeat, the janitor's `finished`), with a second round and 10 s for a busy API.
            stored = Jobs(conn).get(job["id"])
            silent = epoch(stored["finished"]) - stored["heartbeat"]
            assert LOST_AFTER < silent <= LOST_AFTER + 2 * JANITOR_EVERY + 10.0, silent
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
    worker = stack.worker()
    conn = redis.Redis.from_url(stack.redis.url)
    # The worker is frozen whenever the API goes or comes back (WorkerGate, following the stream in Redis while no API
    # runs): the job runs for certain across the restart, however fast the machine is.
    with WorkerGate(worker, StreamEvents(conn)) as gate:
        gate.hold()
        with Client(stack.url) as client:
            job = client.submit(LONG)
            gate.run_to(job["id"], 4)
            seen = first_steps(client, job["id"], 5)
            done_before = client.job(job["id"])["progress"]["done"]
        stack.api.stop()  # a second or two of the frozen worker's silence, well within this janitor's 8 s
        assert stack.api.process.returncode is not None
        gate.run_to(job["id"], done_before + 10)  # it runs on while the API is away
        # The new API's janitor waits the production 30 s: the worker stays frozen while the API starts.
        stack.start_api(STEPSCOPE_LOST_AFTER=str(Settings.model_fields["lost_after"].default))
        with Client(stack.url) as client:
            record = client.job(job["id"])
            assert record["status"] == "running"
            done_after = record["progress"]["done"]
            assert done_after > done_before  # it ran on while the API was away
    with Client(stack.url) as client:
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
