"""Health: Redis, workers per queue, queue lengths, and (under `stepscope up`) the supervised processes."""

from __future__ import annotations

import redis
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from stepscope.api.deps import ServicesDep
from stepscope.config import Settings
from stepscope.jobs import live_workers, rq_queue

router = APIRouter(prefix="/api", tags=["health"])


@router.get(
    "/health",
    summary="Service health (503 while Redis is unreachable)",
    responses={503: {"description": "Redis unreachable: {'status': 'unavailable', 'redis': {...}}"}},
)
def health(services: ServicesDep, request: Request):
    """Redis, the live workers per queue, whether every offered model has a worker that has loaded it (`ready`,
    `waiting_for`) and, under `stepscope up`, each supervised process's state (running | restarting | stopped), pid
    and restart count. `status` is "ok" as soon as the API and Redis answer, before any worker is ready."""
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
    # A worker announces itself once its model is loaded: an offered model without one cannot run a job yet.
    served = {w.get("model") for w in workers}
    waiting_for = [m for m in offered_models(services.settings, supervised) if m not in served]
    return {
        "status": "ok",
        "ready": not waiting_for,
        "waiting_for": waiting_for,
        "redis": {"ok": True, "version": info.get("redis_version")},
        "queues": queues,
        "workers": [{k: w.get(k) for k in ("name", "model", "device", "host", "pid", "job", "seen")} for w in workers],
        "store": services.settings.store,
        "auth": bool(services.settings.token),
        "supervised": supervised,
    }


def offered_models(settings: Settings, supervised: dict | None) -> list[str]:
    """The models the service offers: STEPSCOPE_MODELS and, under `stepscope up`, each model it runs a worker for."""
    models = [m.strip() for m in settings.models.split(",") if m.strip()]
    for name in supervised or {}:
        if name.startswith("worker:") and name.split(":", 1)[1] not in models:
            models.append(name.split(":", 1)[1])
    return models
