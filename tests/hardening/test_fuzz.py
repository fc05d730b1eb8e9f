"""Property-based fuzzing of every route in the OpenAPI document (schemathesis): no 5xx, and
every response matches what the document says (status, content type, body schema)."""

from __future__ import annotations

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.hardening.conftest import Stack

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 40  # per operation and generation mode


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    # No worker: fuzzed submissions that pass validation wait in their queues.
    stack = Stack(tmp_path_factory.mktemp("fuzz"))
    try:
        stack.start_api()
        # The document is read once; one HTTP session sends every case (one per case cost an SSL context each).
        stack.operations = operations(stack.url)
        with requests.Session() as stack.session:
            yield stack
    finally:
        stack.stop()


def operations(url: str):
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


def test_the_document_covers_every_route(fuzzed):
    labels = {op.label for op in fuzzed.operations}
    assert {
        "POST /api/jobs",
        "GET /api/jobs/{job_id}/events",
        "GET /api/jobs/{job_id}/artifacts/{path}",
        "GET /api/health",
        "GET /api/models",
        "DELETE /api/jobs/{job_id}",
    } <= labels


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_every_route_answers_within_its_documented_contract(fuzzed, mode):
    failures, skipped = [], []
    for operation in fuzzed.operations:

        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy(generation_mode=schemathesis.GenerationMode(mode)))
        def fuzz(case):
            case.call_and_validate(session=fuzzed.session, checks=CHECKS, timeout=30)

        try:
            fuzz()
        except Unsatisfiable:
            # Negative mode has nothing to break in some operations (a path of any string is
            # valid, a route without parameters has no input): not a failure, nothing to try.
            assert mode == "negative", operation.label
            skipped.append(operation.label)
        except Exception as exc:  # collect every operation's first failure, then report them all
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
    if mode == "positive":  # schema-valid specs were accepted and queued, not just refused
        assert httpx.get(f"{fuzzed.url}/api/jobs").json()["total"] > 0
    exercised = {op.label for op in fuzzed.operations} - set(skipped)
    assert {"POST /api/jobs", "GET /api/jobs", "POST /api/jobs/{job_id}/decodes"} <= exercised
