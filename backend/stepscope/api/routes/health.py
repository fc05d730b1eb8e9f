"""Health: Redis, workers per queue, queue lengths, and (under `stepscope up`) the supervised processes."""

from __future__ import annotations

import redis
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from stepscope.api.deps import ServicesDep
from stepscope.jobs import live_workers, rq_queue

router = APIRouter(prefix="/api", tags=["health"])


@router.get(
    "/health",
    summary="Service health (503 while Redis is unreachable)",
    responses={503: {"description": "Redis unreachable: {'status': 'unavailable', 'redis': {...}}"}},
)
def health(services: ServicesDep, request: Request):
    """Redis, the live workers per queue and, under `stepscope up`, each supervised process's state
    (running | restarting | stopped), pid and restart count."""
    supervisor = getattr(request.app.state, "supervisor", None)
    supervised = supervisor.status() if supervisor is not None else None
    try:
        services.redis.ping()
        info = services.redis.info("server")
        workers = live_workers(services.redis)
    except redis.RedisError as exc:
        return JSONResponse(
            {
                "status": "unavailable",
                "redis": {"ok": False, "error": f"{type(exc).__name__}: {exc}"},
                "supervised": supervised,
            },
            status_code=503,
            headers={"Retry-After": "2"},  # as every other 503 (errors.py)
        )
    queues: dict[str, dict] = {}
    for w in workers:
        q = queues.setdefault(w["queue"], {"workers": 0, "queued": 0, "model": w.get("model")})
        q["workers"] += 1
    for q in queues.values():
        q["queued"] = rq_queue(services.redis, q["model"]).count
    return {
        "status": "ok",
        "redis": {"ok": True, "version": info.get("redis_version")},
        "queues": queues,
        "workers": [{k: w.get(k) for k in ("name", "model", "device", "host", "pid", "job", "seen")} for w in workers],
        "store": services.settings.store,
        "auth": bool(services.settings.token),
        "supervised": supervised,
    }
