"""The live event stream under production settings: quiet periods longer than Redis's socket
timeout, a worker killed mid-job, ids out of range, the API shutting down with streams open.

These tests deliberately leave every setting at its production value: STEPSCOPE_SSE_HEARTBEAT (15 s), and the
janitor's STEPSCOPE_LOST_AFTER (30 s) and STEPSCOPE_JANITOR_EVERY (5 s), which the fault tests shorten: here a killed
worker's job is failed on the production timing. That scenario starts with the `production` service
(tests/hardening/conftest.py) and is checked by this module's last test, so the tests before it run while the janitor
waits.
"""

from __future__ import annotations

import json
import signal
import time

import httpx
import pytest
import redis

from stepscope import events, jobs
from stepscope.config import Settings
from tests.hardening.conftest import epoch
from tests.hardening.sse import PRODUCTION_HEARTBEAT, SseReader
from tests.servers import start_api, wait_until

QUEUED = {"model": "tiny-moe", "prompt": "waits in line", "steps": 4}  # no worker serves tiny-moe here
LOST_AFTER = Settings.model_fields["lost_after"].default
JANITOR_EVERY = Settings.model_fields["janitor_every"].default
RESULT_TTL = Settings.model_fields["result_ttl"].default  # tests/hardening/test_load.py waits out a 5 s one
REDIS_SOCKET_TIMEOUT = 5.0  # redis-py's default socket timeout, which used to cut quiet streams


def test_a_queued_job_s_stream_outlives_the_redis_socket_timeout_and_ends_with_its_final_event(production):
    job = httpx.post(f"{production.url}/api/jobs", json=QUEUED, timeout=30).json()
    reader = SseReader(production.url, job["id"], timeout=PRODUCTION_HEARTBEAT * 3)
    assert reader.status == 200
    opened = time.monotonic()
    seen: list[tuple[float, str]] = []
    try:
        for arrived, line in reader.lines():
            seen.append((arrived - opened, line))
            if line == ": heartbeat":
                # Quiet for longer than Redis's socket timeout: the stream must still be here. Cancel the job.
                assert httpx.post(f"{production.url}/api/jobs/{job['id']}/cancel", timeout=30).status_code in (200, 202)
            if line.startswith("data: ") and json.loads(line[6:])["type"] in events.TERMINAL:
                break
    finally:
        reader.close()
    lines = [line for _, line in seen]
    assert lines[0].startswith("retry: ")
    types = [json.loads(line[6:])["type"] for line in lines if line.startswith("data: ")]
    assert types == ["queued", "cancelled"], lines
    heartbeat_at = next(t for t, line in seen if line == ": heartbeat")
    assert REDIS_SOCKET_TIMEOUT < heartbeat_at, "the heartbeat came before the quiet period it is meant to test"
    assert heartbeat_at == pytest.approx(PRODUCTION_HEARTBEAT, abs=3.0)
    assert "TimeoutError" not in production.api.output()


def test_a_stream_id_beyond_64_bits_is_refused_with_400(production):
    job = httpx.post(f"{production.url}/api/jobs", json=QUEUED, timeout=30).json()
    for value in ("18446744073709551616-0", "0-18446744073709551616", "99999999999999999999-1"):
        for kwargs, field in (
            ({"headers": {"Last-Event-ID": value}}, "Last-Event-ID"),
            ({"params": {"after": value}}, "after"),
        ):
            r = httpx.get(f"{production.url}/api/jobs/{job['id']}/events", timeout=30, **kwargs)
            assert r.status_code == 400, r.text
            assert r.headers["content-type"] == "application/json"
            assert r.json()["field"] == field


def test_the_api_stops_within_10_s_of_sigterm_and_open_streams_get_a_last_event(production):
    # An API of its own on the module's Redis: the shared one serves the other tests.
    api = start_api(production.env, production.root / "logs" / "api-sigterm.log")
    production.procs.append(api)
    job = httpx.post(f"{api.url}/api/jobs", json=QUEUED, timeout=30).json()
    readers = [SseReader(api.url, job["id"], timeout=30) for _ in range(3)]
    try:
        for reader in readers:  # each has its `queued` event: the streams are open and following
            lines = reader.lines()
            assert next(line for _, line in lines if line.startswith("data: "))
            reader.rest = lines
        sent = time.monotonic()
        api.process.send_signal(signal.SIGTERM)
        for reader in readers:
            rest = [line for _, line in reader.rest]
            assert rest[-2:] == ["event: stream_closing", rest[-1]], rest
            assert json.loads(rest[-1][6:])["type"] == events.STREAM_CLOSING
            assert not any(line.startswith("id: ") for line in rest)  # resuming goes on from `queued`
        api.process.wait(timeout=10)
        assert time.monotonic() - sent < 10
    finally:
        for reader in readers:
            reader.close()
    assert api.process.returncode is not None


def test_300_viewers_of_one_job_share_one_redis_reader(production):
    """300 viewers of one job cost the API one Redis reader, not 300 connections."""
    # The killed-worker scenario opens and drops connections (its worker, the janitor's writes): let it end first.
    production.killed_worker_viewer.exception(timeout=300)
    job = httpx.post(f"{production.url}/api/jobs", json=QUEUED, timeout=30).json()
    conn = redis.Redis.from_url(production.env["STEPSCOPE_REDIS_URL"])
    clients_before = len(conn.client_list())
    readers = [SseReader(production.url, job["id"], timeout=30) for _ in range(300)]
    try:
        for reader in readers:
            lines = reader.lines()
            assert json.loads(next(line for _, line in lines if line.startswith("data: "))[6:])["type"] == "queued"
        clients = len(conn.client_list())
        assert clients - clients_before <= 2, (clients_before, clients)
    finally:
        for reader in readers:
            reader.close()
    wait_until(lambda: httpx.get(f"{production.url}/api/health", timeout=5).status_code == 200, 30, "health")


def test_a_viewer_of_a_job_whose_worker_is_killed_gets_failed_on_its_open_connection_on_production_timing(production):
    # Last in the module: the tests before it (and those of test_docs_offline.py and test_limits.py, which share
    # the `production` service) ran while the janitor waited out LOST_AFTER.
    scenario = production.killed_worker_viewer.result(timeout=300)
    seen, killed_at, final, record = scenario["seen"], scenario["killed_at"], scenario["final"], scenario["record"]
    types = [json.loads(line[6:])["type"] for _, line in seen if line.startswith("data: ")]
    assert killed_at is not None and final is not None, types
    assert final["type"] == "failed" and "lost" in final["error"], final
    # The kill lands when `started` reaches the viewer; events the worker sent meanwhile may come before `failed`.
    assert types[:2] == ["queued", "started"] and types[-1] == "failed", types
    assert not set(types[2:-1]) & events.TERMINAL, types
    assert record["status"] == "failed" and record["error"] == final["error"]
    # The janitor failed the job LOST_AFTER after the worker's last heartbeat, not before, and within about one
    # janitor round of it. Both times are the service's own (the job's last heartbeat, the janitor's `finished`), so
    # a busy test process does not stretch them; a second round and 10 s for the API's event loop on a loaded machine.
    silent = epoch(record["finished"]) - record["heartbeat"]
    assert LOST_AFTER < silent <= LOST_AFTER + 2 * JANITOR_EVERY + 10.0, silent
    # Meanwhile the open stream stayed quiet past Redis's socket timeout, kept alive by heartbeat comments.
    quiet = [line for arrived, line in seen if arrived > killed_at]
    assert quiet.count(": heartbeat") >= int(LOST_AFTER // PRODUCTION_HEARTBEAT) - 1, quiet
    # The ended job's record and event stream are kept for the production result TTL (a week) from its end.
    conn = redis.Redis.from_url(production.redis_url)
    job_id = record["id"]
    for key in (jobs.job_key(job_id), events.stream_key(job_id)):
        expected = RESULT_TTL - (time.time() - epoch(record["finished"]))
        assert abs(conn.ttl(key) - expected) <= 30, (key, conn.ttl(key), expected)
