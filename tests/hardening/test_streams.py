"""The live event stream under production settings: quiet periods longer than Redis's socket
timeout, a worker killed mid-job, ids out of range, the API shutting down with streams open.

These tests deliberately leave STEPSCOPE_SSE_HEARTBEAT at its production value (15 s).
"""

from __future__ import annotations

import json
import signal
import socket
import time

import httpx
import pytest
import redis

from stepscope import events
from stepscope.config import Settings
from tests.servers import start_worker, wait_until

QUEUED = {"model": "tiny-moe", "prompt": "waits in line", "steps": 4}  # no worker serves tiny-moe here
PRODUCTION_HEARTBEAT = Settings.model_fields["sse_heartbeat"].default
REDIS_SOCKET_TIMEOUT = 5.0  # redis-py's default socket timeout, which used to cut quiet streams


class SseReader:
    """A raw SSE connection: each line with the monotonic time it arrived."""

    def __init__(self, url: str, job_id: str, headers: dict | None = None, timeout: float = 60):
        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        request = f"GET /api/jobs/{job_id}/events HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"
        self.sock.sendall(request.encode())
        self.file = self.sock.makefile("rb")
        self.status = int(self.file.readline().split()[1])
        while self.file.readline() not in (b"\r\n", b""):  # response headers
            pass

    def lines(self):
        """(arrival time, line) until the server closes the stream (chunked framing stripped)."""
        while True:
            size_line = self.file.readline()
            if not size_line:
                return
            size = int(size_line.strip() or b"0", 16)
            if size == 0:
                return
            chunk = self.file.read(size)
            self.file.readline()
            now = time.monotonic()
            for line in chunk.decode().split("\n"):
                if line:
                    yield now, line

    def close(self) -> None:
        self.file.close()
        self.sock.close()


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


def test_a_viewer_of_a_job_whose_worker_is_killed_gets_failed_on_its_open_connection(production):
    worker = start_worker(production.env, production.root / "logs" / "worker.log")
    production.procs.append(worker)
    spec = {"model": "tiny", "prompt": "interrupted", "steps": 200, "height": 96, "width": 96}
    job = httpx.post(f"{production.url}/api/jobs", json=spec, timeout=30).json()
    reader = SseReader(production.url, job["id"], timeout=60)
    types: list[str] = []
    killed_at = final = None
    try:
        for arrived, line in reader.lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line[6:])
            types.append(event["type"])
            if event["type"] == "started" and killed_at is None:
                worker.kill()
                killed_at = arrived
            if event["type"] in events.TERMINAL:
                failed_at, final = arrived, event
                break
    finally:
        reader.close()
    assert killed_at is not None and final is not None, types
    assert final["type"] == "failed" and "lost" in final["error"], final
    # Between the kill and `failed` the stream was quiet for longer than Redis's socket timeout.
    assert failed_at - killed_at > REDIS_SOCKET_TIMEOUT
    assert types == ["queued", "started", "failed"]


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
    job = httpx.post(f"{production.url}/api/jobs", json=QUEUED, timeout=30).json()
    readers = [SseReader(production.url, job["id"], timeout=30) for _ in range(3)]
    try:
        for reader in readers:  # each has its `queued` event: the streams are open and following
            lines = reader.lines()
            assert next(line for _, line in lines if line.startswith("data: "))
            reader.rest = lines
        sent = time.monotonic()
        production.api.process.send_signal(signal.SIGTERM)
        for reader in readers:
            rest = [line for _, line in reader.rest]
            assert rest[-2:] == ["event: stream_closing", rest[-1]], rest
            assert json.loads(rest[-1][6:])["type"] == events.STREAM_CLOSING
            assert not any(line.startswith("id: ") for line in rest)  # resuming goes on from `queued`
        production.api.process.wait(timeout=10)
        assert time.monotonic() - sent < 10
    finally:
        for reader in readers:
            reader.close()
    assert production.api.process.returncode is not None


def test_300_viewers_of_one_job_share_one_redis_reader(production):
    """300 viewers of one job cost the API one Redis reader, not 300 connections."""
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
