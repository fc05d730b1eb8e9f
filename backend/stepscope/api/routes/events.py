"""Server-sent events: a job's stream replayed from `Last-Event-ID` (or the start), then live.

However many viewers follow a job, the API reads its Redis stream once: `EventHub` runs one
reader per followed job, keeps the job's events (already encoded as SSE) in memory while anyone
watches, and every viewer walks that shared list at its own pace. A viewer therefore costs no
Redis connection, and every viewer sees every event in stream order, once.

The reader's blocking XREAD lasts READ_BLOCK_MS on a client whose socket timeout is longer, so
quiet periods of any length (a queued job, a 14B step of 7 s) keep the stream open; viewers get a
heartbeat comment after `sse_heartbeat` seconds without an event. When the API shuts down every
open stream gets a last `stream_closing` event (no id) and ends, so clients reconnect elsewhere.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import logging
import time
from typing import Annotated

import redis
import redis.asyncio as aioredis
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from stepscope import events
from stepscope.api.deps import ServicesDep
from stepscope.api.deps import job_record as _record
from stepscope.api.errors import ApiError, responses

router = APIRouter(prefix="/api/jobs", tags=["events"])
log = logging.getLogger("stepscope.api.events")

READ_BLOCK_MS = 5000  # one XREAD waits this long for new entries before it is issued again
READ_SOCKET_TIMEOUT = 20.0  # seconds: longer than READ_BLOCK_MS, so a quiet stream never times out
RETRY_MS = 2000  # the reconnection delay EventSource is told to use


def sse(event_id: str | None, event: dict) -> bytes:
    """One SSE message; without an id it leaves the client's Last-Event-ID as it was."""
    data = json.dumps(event, separators=(",", ":"))
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event.get('type', 'message')}\ndata: {data}\n\n".encode()


class JobFeed:
    """Every event of one job read so far, shared by all of its viewers."""

    def __init__(self, job_id: str):
        self.job_id = job_id
        self.ids: list[tuple[int, int]] = []  # parsed stream ids, ascending
        self.messages: list[bytes] = []  # the same events as SSE bytes, encoded once for every viewer
        self.complete = False  # the final event has been read: nothing follows it
        self.viewers = 0
        self.reader: asyncio.Task | None = None
        self._changed = asyncio.Event()

    def append(self, entry_id: str, event: dict) -> None:
        parsed = events.parse_stream_id(entry_id)
        if parsed is None or (self.ids and parsed <= self.ids[-1]):
            return  # Redis ids only grow; anything else was seen already
        self.ids.append(parsed)
        self.messages.append(sse(entry_id, event))
        if events.is_final(event):
            self.complete = True

    def notify(self) -> None:
        """Wake every viewer waiting for news (new events, the end, or shutdown)."""
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def first_after(self, after: tuple[int, int]) -> int:
        """The index of the first event whose id is greater than `after`."""
        return bisect.bisect_right(self.ids, after)

    async def wait(self, timeout: float) -> None:
        """Return on news or after `timeout` seconds, whichever comes first."""
        with contextlib.suppress(asyncio.TimeoutError):  # not the builtin TimeoutError before Python 3.11
            await asyncio.wait_for(self._changed.wait(), timeout)


class EventHub:
    """One Redis reader per followed job, fanned out to that job's viewers."""

    def __init__(self, redis_url: str):
        # A pool of its own: readers block in XREAD, and there is one per followed job, not per viewer.
        self.redis = aioredis.Redis.from_url(
            redis_url,
            socket_timeout=READ_SOCKET_TIMEOUT,
            socket_connect_timeout=2,
            health_check_interval=30,
            max_connections=100_000,
        )
        self.feeds: dict[str, JobFeed] = {}
        self.closing = False

    def join(self, job_id: str) -> JobFeed:
        """The job's feed, its reader started if this is the first viewer."""
        feed = self.feeds.get(job_id)
        if feed is None:
            feed = self.feeds[job_id] = JobFeed(job_id)
            feed.reader = asyncio.create_task(self._read(feed), name=f"events-{job_id}")
        feed.viewers += 1
        return feed

    def leave(self, feed: JobFeed) -> None:
        feed.viewers -= 1
        if feed.viewers == 0 and self.feeds.get(feed.job_id) is feed:
            del self.feeds[feed.job_id]
            if feed.reader is not None:
                feed.reader.cancel()

    async def _read(self, feed: JobFeed) -> None:
        key = events.stream_key(feed.job_id)
        after = "0-0"
        delay = 0.2
        while not (feed.complete or self.closing):
            try:
                reply = await self.redis.xread({key: after}, count=500, block=READ_BLOCK_MS)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                # Redis restarting: viewers keep their connections (heartbeats) while we retry.
                log.warning("events of job %s: Redis unreachable (%s); retrying in %.1f s", feed.job_id, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            except Exception:  # anything else: a reader that died would leave its viewers waiting forever
                log.exception("events of job %s: reading the stream failed; retrying in %.1f s", feed.job_id, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.2
            for entry_id, event in events.entries(reply):
                feed.append(entry_id, event)
                after = entry_id
                if feed.complete:
                    break
            if reply:
                feed.notify()
        feed.notify()

    def close(self) -> None:
        """Tell every open stream to send its last event and end (the API is shutting down)."""
        if self.closing:
            return
        self.closing = True
        for feed in list(self.feeds.values()):
            feed.notify()

    async def aclose(self) -> None:
        self.close()
        readers = [f.reader for f in self.feeds.values() if f.reader is not None]
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await self.redis.aclose()


def get_hub(request: Request) -> EventHub:
    return request.app.state.event_hub


async def follow(hub: EventHub, job_id: str, after: tuple[int, int], heartbeat: float):
    """SSE bytes of a job's events after `after`, then live ones, until its final event."""
    feed = hub.join(job_id)
    try:
        yield f"retry: {RETRY_MS}\n\n".encode()
        cursor = feed.first_after(after)
        last_sent = time.monotonic()
        while True:
            # Events a viewer joining before the reader got there missed are skipped by id, not index.
            while cursor < len(feed.ids) and feed.ids[cursor] <= after:
                cursor += 1
            if cursor < len(feed.messages):
                end = len(feed.messages)
                yield b"".join(feed.messages[cursor:end])
                cursor = end
                last_sent = time.monotonic()
                continue
            if feed.complete:
                return
            if hub.closing:
                yield sse(None, events.stream_closing_event("the API is shutting down; reconnect with Last-Event-ID"))
                return
            quiet = time.monotonic() - last_sent
            if quiet >= heartbeat:
                yield b": heartbeat\n\n"
                last_sent = time.monotonic()
                continue
            await feed.wait(heartbeat - quiet)
    finally:
        hub.leave(feed)


@router.get(
    "/{job_id}/events",
    summary="Follow a job's events (text/event-stream)",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "SSE stream, ends after the terminal event"},
        **responses(400, 404),
    },
)
async def job_events(
    job_id: str,
    request: Request,
    services: ServicesDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    after: Annotated[str | None, Query(description="resume after this event id (as Last-Event-ID)")] = None,
) -> StreamingResponse:
    """Replays every event after `Last-Event-ID` (header) or `after` (query), or from the first,
    then follows live ones; sends a comment heartbeat when quiet and ends after
    `finished`, `failed` or `cancelled` (or with `stream_closing` when the API shuts down)."""
    start = last_event_id or after or "0-0"
    parsed = events.parse_stream_id(start)
    if parsed is None:
        field = "Last-Event-ID" if last_event_id else "after"
        raise ApiError(
            400, f"{field}: {start[:40]!r} is not a stream id like 1718000000000-0 (two 64-bit integers)", field
        )
    await asyncio.to_thread(_record, services, job_id)
    stream = follow(get_hub(request), job_id, parsed, services.settings.sse_heartbeat)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream, media_type="text/event-stream", headers=headers)
