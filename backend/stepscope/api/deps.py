"""Dependencies shared by the routes: settings, Redis, the store, job records, auth."""

from __future__ import annotations

import re
import secrets
from typing import Annotated

import redis
import redis.asyncio as aioredis
from fastapi import Depends, HTTPException, Request

from stepscope.api.errors import ApiError
from stepscope.config import Settings
from stepscope.jobs import Jobs
from stepscope.store import MANIFEST, NotFound, Store


class Services:
    """Long-lived clients of one app instance (created at startup, closed at shutdown)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.redis = redis.Redis.from_url(
            settings.redis_url, socket_timeout=5, socket_connect_timeout=2, health_check_interval=10
        )
        # SSE viewers block in XREAD for up to a heartbeat interval; their reads need no timeout.
        self.aredis = aioredis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, health_check_interval=10)
        self.store = Store(settings.store)
        self.jobs = Jobs(self.redis, ttl=settings.result_ttl)

    async def close(self) -> None:
        await self.aredis.aclose()
        self.redis.close()


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]

JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def job_record(services: Services, job_id: str) -> dict:
    """The record of job `job_id`, or a 404 naming it (also for ids that cannot exist).

    A run directory in the store without a record (written by `stepscope reproduce` or `bench`, or its
    record expired) is adopted from its manifest (`Jobs.adopt_stored_run`: a terminal one gets a stored record, one
    still running a record that is not stored), so every route serves it.
    """
    if not JOB_ID.match(job_id):
        raise ApiError(404, f"no job {job_id!r}", "job_id")
    record = services.jobs.get(job_id)
    if record is None:
        try:
            run = services.store.open(job_id)
            manifest = run.manifest()
        except (NotFound, ValueError, OSError):
            manifest = None
        if isinstance(manifest, dict):
            record = services.jobs.adopt_stored_run(job_id, manifest, run.seconds_since_modified(MANIFEST))
    if record is None:
        raise ApiError(404, f"no job {job_id!r}", "job_id")
    return record


def _presented_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    # EventSource and <img> cannot set headers: the explorer keeps the token in a cookie.
    return request.cookies.get("stepscope_token") or request.query_params.get("access_token")


def require_token(request: Request) -> None:
    """With STEPSCOPE_TOKEN set, every /api route needs it (header, cookie or access_token)."""
    expected = request.app.state.services.settings.token
    if not expected:
        return
    presented = _presented_token(request)
    if not presented or not secrets.compare_digest(presented.encode(), expected.encode()):
        raise HTTPException(
            status_code=401,
            detail="missing or wrong token: send 'Authorization: Bearer <STEPSCOPE_TOKEN>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
