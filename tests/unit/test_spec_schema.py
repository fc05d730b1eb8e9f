"""The frontend's tests read a copy of the spec's JSON Schema: it must be the one the API serves."""

from __future__ import annotations

import json
from pathlib import Path

from stepscope.spec import INTERVENTION_KINDS, ExperimentSpec, Intervention

FIXTURE = Path(__file__).resolve().parents[2] / "frontend" / "tests" / "fixtures" / "spec.schema.json"


def test_the_frontend_fixture_is_the_current_spec_schema():
    assert json.loads(FIXTURE.read_text()) == ExperimentSpec.model_json_schema(), (
        "frontend/tests/fixtures/spec.schema.json is stale: rewrite it from ExperimentSpec.model_json_schema()"
    )


def test_the_intervention_kinds_come_from_the_union():
    mapping = ExperimentSpec.model_json_schema()["$defs"]["Variant"]["properties"]["interventions"]["items"]
    assert set(mapping["discriminator"]["mapping"]) == INTERVENTION_KINDS
    assert len(INTERVENTION_KINDS) == len(Intervention.__origin__.__args__)
