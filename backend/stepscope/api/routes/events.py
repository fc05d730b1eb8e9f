"""Server-sent events: a job's stream replayed from `Last-Event-ID` (or the start), then live."""

from __future__ import annotations

import json
import re
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from stepscope import events
from stepscope.api.deps import ServicesDep
from stepscope.api.errors import ApiError, responses
from stepscope.api.routes.jobs import _record

router = APIRouter(prefix="/api/jobs", tags=["events"])
STREAM_ID = re.compile(events.STREAM_ID_PATTERN)


def sse(event_id: str, event: dict) -> bytes:
    data = json.dumps(event, separators=(",", ":"))
    return f"id: {event_id}\nevent: {event.get('type', 'message')}\ndata: {data}\n\n".encode()


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
    `finished`, `failed` or `cancelled`."""
    _record(services, job_id)
    start = last_event_id or after or "0-0"
    if not STREAM_ID.match(start):
        raise ApiError(400, f"Last-Event-ID: {start!r} is not a stream id like 1718000000000-0", "Last-Event-ID")
    heartbeat_ms = int(services.settings.sse_heartbeat * 1000)

    async def stream():
        yield b"retry: 2000\n\n"
        async for event_id, event in events.follow_async(services.aredis, job_id, start, block_ms=heartbeat_ms):
            if await request.is_disconnected():
                return
            if event_id is None:
                yield b": heartbeat\n\n"
                continue
            yield sse(event_id, event)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)
