"""Dependencies shared by the routes: settings, Redis, the store, job records, auth."""

from __future__ import annotations

import json
import re
import secrets
import threading
from collections import OrderedDict
from typing import Annotated

import redis
import redis.asyncio as aioredis
from fastapi import Depends, HTTPException, Request

from stepscope.api.errors import ApiError
from stepscope.config import Settings
from stepscope.jobs import TERMINAL, Jobs, job_key
from stepscope.run_format import Manifest, RunFormatError, parse_manifest
from stepscope.store import MANIFEST, MAX_MANIFEST_BYTES, NotFound, RunDir, Store, StoreError, TooLarge


class ManifestCache:
    """Typed manifests by run, parsed once per version of the file ((mtime, size, inode): a manifest rewritten in
    place or replaced is read again). Holds the last `size` runs'; an invalid manifest's error is cached the same way.
    """

    def __init__(self, size: int = 64):
        self.size = size
        self._entries: OrderedDict[str, tuple[tuple, Manifest | RunFormatError]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, run: RunDir) -> Manifest:
        """The run's manifest, validated by run_format's types; RunFormatError naming the problem (also for one
        that is not JSON or over MAX_MANIFEST_BYTES); NotFound if it is not a regular file of the run."""
        version = run.file_version(MANIFEST)
        if version is None:
            raise NotFound(f"no run {run.run_id}")
        key = run.path
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and hit[0] == version:
                self._entries.move_to_end(key)
                return _result(hit[1])
        result = _parse(run)
        if run.file_version(MANIFEST) == version:  # unchanged while it was read: what was read is that version
            with self._lock:
                self._entries[key] = (version, result)
                self._entries.move_to_end(key)
                while len(self._entries) > self.size:
                    self._entries.popitem(last=False)
        return _result(result)


def _parse(run: RunDir) -> Manifest | RunFormatError:
    try:
        data = run.manifest()
    except TooLarge:
        return RunFormatError(f"manifest.json: over the {MAX_MANIFEST_BYTES} byte limit of a manifest")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return RunFormatError(f"manifest.json: not valid JSON ({exc})")
    except RecursionError:
        return RunFormatError("manifest.json: nested too deeply to parse")
    if not isinstance(data, dict):
        return RunFormatError(f"manifest.json: expected a JSON object, got {type(data).__name__}")
    try:
        return parse_manifest(data)
    except RunFormatError as exc:
        return exc
    except RecursionError:
        return RunFormatError("manifest.json: nested too deeply to validate")


def _result(result: Manifest | RunFormatError) -> Manifest:
    if isinstance(result, RunFormatError):
        raise result
    return result


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
        self.manifests = ManifestCache()

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
    still running a record that is not stored), so every route serves it. Only a regular manifest.json in a real
    directory of the store is read (no symlink at any level), at most MAX_MANIFEST_BYTES of it, and it must be valid
    as run_format's `Manifest`: otherwise the answer is a 404 saying what is wrong with it.
    """
    if not JOB_ID.match(job_id):
        raise ApiError(404, f"no job {job_id!r}", "job_id")
    record = services.jobs.get(job_id)
    if record is not None:
        return record
    try:
        run = services.store.open(job_id)
        manifest = services.manifests.get(run)
    except (NotFound, OSError):
        raise ApiError(404, f"no job {job_id!r}", "job_id") from None
    except (RunFormatError, StoreError) as exc:
        raise ApiError(404, f"no job {job_id!r}: its stored run cannot be adopted: {exc}", "job_id") from None
    adopted = {
        "status": manifest.status,
        "error": manifest.error,
        "spec": manifest.spec,
        "created": manifest.created,
        "finished": manifest.finished,
        "progress": manifest.progress(),
    }
    return services.jobs.adopt_stored_run(job_id, adopted, run.seconds_since_modified(MANIFEST))


def adopt_stored_runs(services: Services) -> int:
    """Give every run directory in the store that has no job record one (`job_record`), so that the jobs list
    shows runs written without the service (`stepscope reproduce`, `bench`, `run --out` into the store) from the
    start; a directory that cannot be adopted is left as it is. Returns how many records were made."""
    run_ids = services.store.run_ids()
    with services.redis.pipeline(transaction=False) as pipe:
        for run_id in run_ids:
            pipe.exists(job_key(run_id))
        known = pipe.execute()
    adopted = 0
    for run_id, exists in zip(run_ids, known, strict=True):
        if exists:
            continue
        try:
            record = job_record(services, run_id)
        except ApiError:
            continue  # not a run's directory (a bench's, a broken manifest): job_record's 404 says why when asked
        adopted += record.get("status") in TERMINAL
    return adopted


def typed_manifest(services: Services, run: RunDir, job_id: str) -> Manifest:
    """The run's manifest validated by run_format's types, or a 409 naming what is wrong with it."""
    try:
        return services.manifests.get(run)
    except NotFound:
        raise ApiError(404, f"job {job_id} has no manifest yet", "job_id") from None
    except RunFormatError as exc:
        raise ApiError(409, f"job {job_id}: {exc}", "manifest") from None


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
