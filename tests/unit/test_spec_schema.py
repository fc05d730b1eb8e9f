"""The frontend's tests read a copy of the spec's JSON Schema: it must be the one the API serves."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from stepscope.api.routes.schema import spec_schema
from stepscope.spec import INTERVENTION_KINDS, ExperimentSpec, Intervention
from tests.spec_fields import spec_field, spec_scalar_paths

FIXTURE = Path(__file__).resolve().parents[2] / "frontend" / "tests" / "fixtures" / "spec.schema.json"


def test_the_frontend_fixture_is_the_current_spec_schema():
    assert json.loads(FIXTURE.read_text()) == ExperimentSpec.model_json_schema(), (
        "frontend/tests/fixtures/spec.schema.json is stale: rewrite it from ExperimentSpec.model_json_schema()"
    )


def test_the_intervention_kinds_come_from_the_union():
    mapping = ExperimentSpec.model_json_schema()["$defs"]["Variant"]["properties"]["interventions"]["items"]
    assert set(mapping["discriminator"]["mapping"]) == INTERVENTION_KINDS
    assert len(INTERVENTION_KINDS) == len(Intervention.__origin__.__args__)


FRONTEND = FIXTURE.parents[2]


def run_node(script: str, stdin: str = "") -> dict:
    proc = subprocess.run(
        ["node", "--input-type=module", "-e", script], input=stdin, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (make test installs it)")
def test_field_bounds_read_from_the_served_schema_are_the_spec_fields():
    """specform.js `fieldBounds`, on the schema the API serves, gives each field's bounds, default and
    choices as spec.py's pydantic fields hold them (the submit form's inputs take them from it)."""
    paths = spec_scalar_paths()
    script = f"""
        import {{ readFileSync }} from "node:fs";
        const {{ fieldBounds }} = await import({json.dumps((FRONTEND / "specform.js").as_uri())});
        const schema = JSON.parse(readFileSync(0, "utf8"));
        const out = {{}};
        for (const path of {json.dumps(paths)}) out[path] = fieldBounds(schema, path);
        let missing = null;
        try {{ fieldBounds(schema, "probes.not_a_field"); }} catch (error) {{ missing = error.message; }}
        console.log(JSON.stringify({{ out, missing }}));
    """
    js = run_node(script, json.dumps(spec_schema()))
    assert js["missing"] == "the spec's schema has no field probes.not_a_field"
    for path in paths:
        want, got = spec_field(path), js["out"][path]
        assert got.get("type") == want["type"], path
        assert (got.get("min"), got.get("max")) == (want["min"], want["max"]), path
        assert got["nullable"] == want["nullable"], path
        assert got.get("options", []) == want["options"], path
        assert got.get("default", "computed") == want.get("default", "computed"), path
        assert got.get("step") == {"integer": 1, "number": "any"}.get(want["type"]), path


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (make test installs it)")
def test_the_explorer_has_words_only_for_kinds_the_spec_has():
    """frontend/interventions.js names kinds of its own accord (short names, summaries, sweep axes):
    each must be one of spec.py's, so renaming or removing a kind there cannot leave it behind."""
    script = f"""
        const m = await import({json.dumps((FRONTEND / "interventions.js").as_uri())});
        console.log(JSON.stringify({{ kinds: m.DESCRIBED_KINDS, unknown: m.describeIntervention({{ kind: "blur" }}),
          prefix: m.variantPrefix("blur") }}));
    """
    js = run_node(script)
    assert set(js["kinds"]) <= INTERVENTION_KINDS, set(js["kinds"]) - INTERVENTION_KINDS
    assert js["kinds"], "interventions.js exports its kinds"
    # A kind added to spec.py without words here still reads: by its own name.
    assert (js["unknown"], js["prefix"]) == ("blur", "blur")


def test_only_interventions_js_names_an_intervention_kind():
    """Intervention kinds are named in one frontend module; the others get them from the schema (the
    submit form) or from the data they show. A kind that is also the name of a spec field
    ("guidance") counts only where it is compared as a kind."""
    field_names = {path.split(".")[-1] for path in spec_scalar_paths()} | set(ExperimentSpec.model_fields)
    patterns = {}
    for kind in sorted(INTERVENTION_KINDS):
        as_kind = rf"(?:case\s+|kind\s*[!=]==?\s*)[\"'`]{kind}[\"'`]|[\"'`]{kind}[\"'`]\s*(?:[!=]==?\s*[\w.?]*kind\b)"
        anywhere = rf"[\"'`]{kind}[\"'`]|\b{kind}\s*:"
        patterns[kind] = re.compile(as_kind if kind in field_names else f"{as_kind}|{anywhere}")
    offenders = []
    for path in sorted(FRONTEND.rglob("*.js")):
        relative = path.relative_to(FRONTEND)
        if relative.parts[0] in {"tests", "node_modules"} or relative == Path("interventions.js"):
            continue
        text = path.read_text()
        offenders += [f"{relative}: {kind}" for kind, pattern in patterns.items() if pattern.search(text)]
    assert not offenders, offenders
