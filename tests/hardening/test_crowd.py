"""1,000 viewers of one running job: each gets every event after its start, in order, once, and
the API holds one Redis reader for them all (production heartbeat, production Redis settings)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import httpx
import redis

from stepscope import events
from tests.hardening.conftest import Stack
from tests.hardening.crowd import check, crowd

VIEWERS = 1000


def test_1000_viewers_early_late_and_resuming_each_get_every_event_in_order_once(tmp_path):
    stack = Stack(tmp_path)
    stack.env.pop("STEPSCOPE_SSE_HEARTBEAT")  # the production heartbeat
    try:
        stack.start_api()
        stack.start_worker()
        conn = redis.Redis.from_url(stack.redis.url)
        spec = {"model": "tiny", "prompt": "watched by a crowd", "steps": 8, "height": 64, "width": 64}
        job_id = httpx.post(f"{stack.url}/api/jobs", json=spec, timeout=30).json()["id"]
        # A thread of its own: a browser test earlier in the session may leave a loop running here.
        with ThreadPoolExecutor(1) as pool:
            watching = pool.submit(
                asyncio.run, crowd(stack.url, job_id, VIEWERS, lambda: events.read(conn, job_id), stack.api.pid)
            )
            result = watching.result(timeout=300)
        reference = [(i, e["type"]) for i, e in events.read(conn, job_id)]
        assert reference[-1][1] == "finished"
        assert len(result["early"]) + len(result["late"]) + len(result["resumed"]) == VIEWERS
        check(result, reference)
        # The crowd cost no Redis connection per viewer (the API's, the worker's and ours are a handful).
        assert len(conn.client_list()) < 30
        grown = result["peak_rss_mib"] - stack.rss_kib(stack.api) / 1024
        assert result["peak_rss_mib"] > 0 and grown < 300
    finally:
        stack.stop()
