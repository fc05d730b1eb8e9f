"""Load: a burst of submissions, a crowd of viewers, bounded API memory, expiring job data."""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis

from stepscope import events
from stepscope.client import Client
from stepscope.config import Settings
from stepscope.jobs import job_key, queue_name
from tests.hardening.conftest import Stack
from tests.servers import WorkerGate, wait_until

QUEUED = {"model": "tiny-moe", "prompt": "waits in line", "steps": 4}  # no worker serves tiny-moe here


def test_a_burst_of_500_jobs_is_all_queued_and_none_lost(stack: Stack):
    stack.start_api()
    before = stack.rss_kib(stack.api)

    # One client for the 16 threads (httpx.Client is thread-safe): a client per request spent ~40 ms of this
    # process's CPU on each (its SSL context), several times what the API spends on a submission.
    with httpx.Client(base_url=stack.url, timeout=60) as http:

        def submit(i: int) -> tuple[int, dict]:
            r = http.post("/api/jobs", json={**QUEUED, "seed": i})
            return r.status_code, r.json()

        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(submit, range(500)))
        assert {status for status, _ in answers} == {201}
        ids = [job["id"] for _, job in answers]
        assert len(set(ids)) == 500
        conn = redis.Redis.from_url(stack.redis.url)
        in_queue = [i.decode() for i in conn.lrange(f"rq:queue:{queue_name('tiny-moe')}", 0, -1)]
        assert set(in_queue) == set(ids)
        # Each submission was told its own place in the queue (nothing left the queue since: no worker).
        assert {job["id"]: job["position"] for _, job in answers} == {job_id: i for i, job_id in enumerate(in_queue)}
        listed = http.get("/api/jobs", params={"status": "queued", "limit": 500}).json()
        assert {j["id"] for j in listed["jobs"]} == set(ids)
        assert sorted(j["position"] for j in listed["jobs"]) == list(range(500))
        # What a submission answers is what the job's own route answers (but for the no-worker warning).
        for _, job in answers[::50]:
            assert {k: v for k, v in job.items() if k != "warning"} == http.get(f"/api/jobs/{job['id']}").json()
    grown_mib = (stack.rss_kib(stack.api) - before) / 1024
    assert grown_mib < 100, f"API memory grew by {grown_mib:.0f} MiB over 500 submissions"


async def _view(url: str, job_id: str, ready: asyncio.Event) -> list[tuple[str, str]]:
    """The job's events as one viewer reads them; `ready` is set once the stream is open (or failed to open)."""
    seen = []
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(120, connect=30)) as client:
            async with client.stream("GET", f"{url}/api/jobs/{job_id}/events") as response:
                ready.set()
                event_id = None
                async for line in response.aiter_lines():
                    if line.startswith("id: "):
                        event_id = line[4:]
                    elif line.startswith("data: "):
                        event = json.loads(line[6:])
                        seen.append((event_id, event["type"], event.get("index")))
                        if event["type"] in events.TERMINAL:
                            return seen
    finally:
        ready.set()  # a viewer that could not connect fails the gather below instead of holding up the crowd
    return seen


async def _crowd(url: str, job_id: str, viewers: int, connected: threading.Event) -> list[list[tuple]]:
    """`viewers` streams of the job, read to their final event; `connected` is set once every one is open."""
    ready = [asyncio.Event() for _ in range(viewers)]
    tasks = [asyncio.create_task(_view(url, job_id, r)) for r in ready]
    await asyncio.gather(*(r.wait() for r in ready))
    connected.set()
    return await asyncio.gather(*tasks)


@pytest.fixture(scope="module")
def short_lived(tmp_path_factory):
    """API and one tiny worker whose job records and streams live 5 s after a job ends (viewers and TTL tests)."""
    # The janitor's production patience: the crowd test freezes the worker while 100 viewers connect.
    lost_after = str(Settings.model_fields["lost_after"].default)
    shared = Stack(tmp_path_factory.mktemp("load"), STEPSCOPE_RESULT_TTL="5", STEPSCOPE_LOST_AFTER=lost_after)
    try:
        shared.start_api()
        shared.start_worker()
        yield shared
    finally:
        shared.stop()


def test_100_viewers_of_one_running_job_each_get_every_event_in_order(short_lived: Stack):
    stack = short_lived
    rss_before = stack.rss_kib(stack.api)
    conn = redis.Redis.from_url(stack.redis.url, socket_timeout=30)  # longer than events.follow's 5 s block
    with Client(stack.url) as client, WorkerGate(stack.workers[0], client) as gate:
        gate.hold()
        job = client.submit({"model": "tiny", "prompt": "watched by a crowd", "steps": 60, "height": 96, "width": 96})
        gate.run_to(job["id"], 2)  # frozen mid-run until the whole crowd follows: the rest reaches them live
        # A thread of its own: a browser test earlier in the session may leave a loop running here. The reference
        # is the stream as Redis stores it, read as it is written (the stream expires 5 s after the job ends).
        connected = threading.Event()
        with ThreadPoolExecutor(2) as pool:
            stored = pool.submit(lambda: list(events.follow(conn, job["id"])))
            crowd = pool.submit(asyncio.run, _crowd(stack.url, job["id"], 100, connected))
            assert connected.wait(120), "100 viewers did not connect within 120 s"
            assert client.job(job["id"])["status"] == "running"
            gate.release()
            streams = crowd.result()
            reference = [(i, e["type"], e.get("index")) for i, e in stored.result(timeout=120)]
        assert client.job(job["id"])["status"] == "finished"
    assert [t for _, t, _ in reference].count("step") == 60 and reference[-1][1] == "finished"
    for stream in streams:
        assert stream == reference  # every event, in stream order, once
    # The connections are gone: the API's memory is back within bounds.
    grown_mib = (stack.rss_kib(stack.api) - rss_before) / 1024
    assert grown_mib < 100, f"API memory grew by {grown_mib:.0f} MiB for 100 viewers"


def test_job_records_and_streams_expire_on_the_result_ttl(short_lived: Stack):
    stack = short_lived
    conn = redis.Redis.from_url(stack.redis.url)
    with Client(stack.url) as client:
        done = client.submit({"model": "tiny", "prompt": "short-lived", "steps": 2})
        assert client.wait(done["id"])["status"] == "finished"
        cancelled = client.submit(QUEUED)
        client.cancel(cancelled["id"])
        for job_id in (done["id"], cancelled["id"]):
            assert 0 < conn.ttl(job_key(job_id)) <= 5
            assert 0 < conn.ttl(events.stream_key(job_id)) <= 5
        waiting = client.submit(QUEUED)  # not ended: kept until it is
        assert conn.ttl(job_key(waiting["id"])) == -1
        ended = (done["id"], cancelled["id"])
        # Redis drops them when the TTL runs out; nothing else deletes them.
        wait_until(lambda: not any(conn.exists(job_key(j), events.stream_key(j)) for j in ended), 30, "the TTL")
        listed = [j["id"] for j in client.jobs()]
        # Other tests' jobs share this API: of this test's three, only the waiting one is listed, once.
        assert [j for j in listed if j in {*ended, waiting["id"]}] == [waiting["id"]]
        # A job cancelled while queued leaves nothing behind; a finished job's run directory stays in the store,
        # and the API serves it again from its manifest (it adopts stored runs that have no record).
        assert httpx.get(f"{stack.url}/api/jobs/{cancelled['id']}", timeout=30).status_code == 404
        assert client.job(done["id"])["status"] == "finished"
