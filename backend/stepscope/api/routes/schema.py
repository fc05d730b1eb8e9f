"""JSON Schemas of the shared contracts: the experiment spec (the submit form is built from it)
and the run directory's manifest."""

from __future__ import annotations

from fastapi import APIRouter

from stepscope.run_format import manifest_json_schema
from stepscope.spec import ExperimentSpec

router = APIRouter(prefix="/api/schema", tags=["schema"])


@router.get("/spec", summary="JSON Schema of the ExperimentSpec (what POST /api/jobs accepts)")
def spec_schema() -> dict:
    """The spec's JSON Schema; interventions are `$defs` reached through `Variant.interventions`."""
    return ExperimentSpec.model_json_schema()


@router.get("/manifest", summary="JSON Schema of a run's manifest.json")
def manifest_schema() -> dict:
    return manifest_json_schema()
