"""One definition of the event vocabulary (stepscope.events): the frontend's copy is generated from
it and equal to it, and no other module spells event types or final statuses out by hand."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stepscope import client, events, jobs

REPO = Path(__file__).resolve().parents[2]
CONTRACT = REPO / "frontend" / "contract" / "events.js"


def test_the_frontend_contract_is_generated_from_events_py():
    assert CONTRACT.read_text() == events.vocabulary_js(), (
        "frontend/contract/events.js is stale: `python -m stepscope.events > frontend/contract/events.js`"
    )


def test_the_contract_lists_every_type_and_final_status():
    text = CONTRACT.read_text()
    for event_type in (*events.EVENT_TYPES, events.STREAM_CLOSING):
        assert f'= "{event_type}";' in text
    assert set(events.FINAL_STATUSES) == events.TERMINAL
    assert set(events.FINAL_STATUSES) <= set(events.EVENT_TYPES)


def test_python_modules_share_the_final_statuses():
    assert client.TERMINAL is events.TERMINAL
    assert jobs.TERMINAL is events.TERMINAL


def _frontend_sources() -> list[Path]:
    return [p for p in (REPO / "frontend").rglob("*.js") if "tests" not in p.parts and "contract" not in p.parts]


def test_no_frontend_module_keeps_its_own_copy_of_the_vocabulary():
    final_set = re.compile(r'"finished",\s*"failed",\s*"cancelled"')
    for path in _frontend_sources():
        text = path.read_text()
        assert not final_set.search(text), f"{path.relative_to(REPO)} lists the final statuses itself"
        assert not re.search(r'case\s+"(' + "|".join(events.EVENT_TYPES) + ')"', text), path


def test_no_backend_module_writes_an_event_dict_by_hand():
    literal = re.compile(r'"type":\s*"(' + "|".join(events.EVENT_TYPES) + r')"')
    offenders = []
    for path in (REPO / "backend" / "stepscope").rglob("*.py"):
        rel = path.relative_to(REPO / "backend" / "stepscope").as_posix()
        if rel == "events.py":
            continue
        if literal.search(path.read_text()):
            offenders.append(rel)
    assert not offenders, f"build events with stepscope.events constructors: {offenders}"


def test_publishing_an_unknown_event_type_is_refused():
    class NoRedis:
        def pipeline(self, transaction=True):
            raise AssertionError("nothing may reach Redis")

    with pytest.raises(ValueError, match="not an event type"):
        events.publish(NoRedis(), "job", {"type": "stepp"})
    with pytest.raises(ValueError, match="final status"):
        events.final_event("running", "job")
