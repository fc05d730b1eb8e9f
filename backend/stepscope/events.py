"""Job events on Redis Streams: one stream per job, read from any id.

Each event is one stream entry with a single field `data` holding JSON with a `type`.
The stream id (e.g. `1718000000000-0`) is the SSE event id, so a viewer that reconnects with
`Last-Event-ID` reads exactly the entries after it: no gaps, no duplicates. Producers publish
an event only after the artifacts it names are stored (see probe/recorder.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import redis

PREFIX = "stepscope"
TERMINAL = frozenset({"finished", "failed", "cancelled"})
STREAM_ID_PATTERN = r"^\d{1,20}-\d{1,20}$"


def stream_key(job_id: str) -> str:
    return f"{PREFIX}:events:{job_id}"


def encode(event: dict) -> dict:
    return {"data": json.dumps(event, separators=(",", ":"), default=str)}


def decode(fields: dict) -> dict:
    raw = fields.get(b"data", fields.get("data"))
    return json.loads(raw)


def _id(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def publish(conn: redis.Redis, job_id: str, event: dict, ttl: int | None = None) -> str:
    """Append an event to the job's stream; returns its id. Sets the stream's TTL when given."""
    key = stream_key(job_id)
    pipe = conn.pipeline(transaction=True)
    pipe.xadd(key, encode(event))
    if ttl:
        pipe.expire(key, ttl)
    return _id(pipe.execute()[0])


def read(conn: redis.Redis, job_id: str, after: str = "0-0", count: int = 1000) -> list[tuple[str, dict]]:
    """Events after `after` (exclusive), oldest first, without blocking."""
    entries = conn.xrange(stream_key(job_id), min=f"({after}" if after != "0-0" else "-", count=count)
    return [(_id(i), decode(f)) for i, f in entries]


def _entries(reply) -> Iterator[tuple[str, dict]]:
    """(id, event) of every entry of an XREAD reply, oldest first."""
    for _, entries in reply or []:
        for entry_id, fields in entries:
            yield _id(entry_id), decode(fields)


def follow(conn: redis.Redis, job_id: str, after: str = "0-0", block_ms: int = 5000) -> Iterator[tuple[str, dict]]:
    """Every event after `after`, then live ones, until a terminal event (blocking reads)."""
    key = stream_key(job_id)
    while True:
        reply = conn.xread({key: after}, count=500, block=block_ms)
        for after, event in _entries(reply):  # noqa: B020 - reading on from the last entry seen
            yield after, event
            if event.get("type") in TERMINAL:
                return


async def follow_async(conn, job_id: str, after: str = "0-0", block_ms: int = 15000):
    """Async `follow` for the API's SSE; yields (None, None) after each quiet `block_ms` so the
    caller can send a heartbeat."""
    key = stream_key(job_id)
    while True:
        reply = await conn.xread({key: after}, count=500, block=block_ms)
        if not reply:
            yield None, None
        for after, event in _entries(reply):
            yield after, event
            if event.get("type") in TERMINAL:
                return


def expire(conn: redis.Redis, job_id: str, ttl: int) -> None:
    conn.expire(stream_key(job_id), ttl)


def delete(conn: redis.Redis, job_id: str) -> None:
    conn.delete(stream_key(job_id))
