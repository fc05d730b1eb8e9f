"""Models: the presets and whatever running workers serve."""

from __future__ import annotations

from fastapi import APIRouter

from stepscope.api.deps import ServicesDep
from stepscope.jobs import live_workers, rq_queue
from stepscope.models import PRESETS
from stepscope.spec import ExperimentSpec

router = APIRouter(prefix="/api", tags=["models"])


@router.get("/models", summary="Model presets and served models")
def list_models(services: ServicesDep) -> dict:
    """Every preset and every model a running worker serves, with its workers and queue; `default` names the model
    a spec without `model` runs on."""
    workers = live_workers(services.redis)
    served: dict[str, list[dict]] = {}
    for w in workers:
        served.setdefault(w.get("model", "?"), []).append(w)
    out = []
    for name, preset in PRESETS.items():
        out.append(
            {
                "name": name,
                "description": preset.description,
                "source": preset.source,
                **preset.info.to_json(),
                "defaults": preset.defaults,
            }
        )
    for name, ws in served.items():
        if name not in PRESETS:
            out.append(
                {
                    "name": name,
                    "description": "served by a running worker",
                    "source": name,
                    **ws[0].get("info", {}),
                    "defaults": {},
                }
            )
    for entry in out:
        entry["workers"] = len(served.get(entry["name"], []))
        entry["queued"] = rq_queue(services.redis, entry["name"]).count
    # `default`: the model of a spec that names none (spec.py owns it).
    return {"models": out, "default": ExperimentSpec.model_fields["model"].default}
