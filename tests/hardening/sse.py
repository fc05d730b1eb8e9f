"""A raw SSE connection, and the killed-worker scenario that the `production` fixture starts."""

from __future__ import annotations

import json
import socket
import time

import httpx
import redis

from stepscope import events
from stepscope.config import Settings
from stepscope.jobs import Jobs
from tests.servers import start_worker

PRODUCTION_HEARTBEAT = Settings.model_fields["sse_heartbeat"].default


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


def watch_a_job_whose_worker_is_killed(production) -> dict:
    """A viewer follows a job whose worker is SIGKILLed at `started`, until its final event; what it saw, when."""
    worker = start_worker(production.env, production.root / "logs" / "killed-worker.log")
    production.procs.append(worker)
    spec = {"model": "tiny", "prompt": "interrupted", "steps": 200, "height": 96, "width": 96}
    job = httpx.post(f"{production.url}/api/jobs", json=spec, timeout=30).json()
    # The stream is quiet for LOST_AFTER after the kill, with a heartbeat comment every PRODUCTION_HEARTBEAT.
    reader = SseReader(production.url, job["id"], timeout=PRODUCTION_HEARTBEAT * 4)
    seen: list[tuple[float, str]] = []
    killed_at = final = None
    # A janitor that never fails the job must fail the test, not hang it: the worker's start (~12 s idle, 30 s
    # loaded) and LOST_AFTER + JANITOR_EVERY (35 s) fit 3× over in 300 s.
    deadline = time.monotonic() + 300
    try:
        for arrived, line in reader.lines():
            seen.append((arrived, line))
            if arrived > deadline:
                break
            if not line.startswith("data: "):
                continue
            event = json.loads(line[6:])
            if event["type"] == "started" and killed_at is None:
                worker.kill()
                killed_at = arrived
            if event["type"] in events.TERMINAL:
                final = event
                break
    finally:
        reader.close()
    record = Jobs(redis.Redis.from_url(production.redis_url)).get(job["id"])
    return {"seen": seen, "killed_at": killed_at, "final": final, "record": record}
