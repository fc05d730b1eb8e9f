"""The event vocabulary of a job, and its stream on Redis Streams (one stream per job, read from any id).

Every event type and the set of final statuses are defined here and nowhere else: producers
build events with the constructors below, the Python client and the frontend read the same
names (frontend/contract/events.js is generated from this module by `python -m stepscope.events`
and a test keeps it equal).

Each event is one stream entry with a single field `data` holding JSON with a `type`.
The stream id (e.g. `1718000000000-0`) is the SSE event id, so a viewer that reconnects with
`Last-Event-ID` reads exactly the entries after it: no gaps, no duplicates. Producers publish
an event only after the artifacts it names are stored (see probe/recorder.py).

This module imports no Redis client (callers pass theirs), so the probe engine can build events
without pulling in the service stack.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from stepscope import run_format

if TYPE_CHECKING:
    import redis

PREFIX = "stepscope"

# -- the vocabulary ---------------------------------------------------------------------------
QUEUED = "queued"  # the job record exists and waits in its model's queue
STARTED = "started"  # a worker claimed the job
EXPERIMENT_STARTED = "experiment_started"  # inputs prepared; manifest.json exists
TRAJECTORY_STARTED = "trajectory_started"  # one trajectory (baseline or a variant) began denoising
STEP = "step"  # one captured step is stored (x̂₀ preview, arrays, layer norms)
DECODE = "decode"  # a full-quality decode of a step (or of the final latents) is stored
TRAJECTORY_FINISHED = "trajectory_finished"  # a trajectory's final outputs are stored
METRIC = "metric"  # a variant's comparison with the baseline is stored
BENCH_INSTANCE = "bench_instance"  # a bench job's task instance ran (baseline and variants) and is scored
FINISHED, FAILED, CANCELLED = run_format.FINAL_STATUSES  # a job's last event is named by its final status
# Not stored in a stream: the API's last word to an open SSE connection when it shuts down. It
# carries no id, so a client that reconnects with Last-Event-ID resumes after the last real event.
STREAM_CLOSING = "stream_closing"

FINAL_STATUSES = run_format.FINAL_STATUSES  # the final statuses of a job, in a fixed order; a stream ends after one
TERMINAL = frozenset(FINAL_STATUSES)  # the same, as a set
EVENT_TYPES = (
    QUEUED,
    STARTED,
    EXPERIMENT_STARTED,
    TRAJECTORY_STARTED,
    STEP,
    DECODE,
    TRAJECTORY_FINISHED,
    METRIC,
    BENCH_INSTANCE,
    *FINAL_STATUSES,
)
STREAM_ID_PATTERN = r"^[0-9]{1,20}-[0-9]{1,20}$"  # ASCII digits only (\d would take "１-0")
_STREAM_ID = re.compile(STREAM_ID_PATTERN)
MAX_ID_PART = 2**64 - 1  # Redis stream ids are two unsigned 64-bit integers


def queued_event(job: str, model: str, kind: str) -> dict:
    """The job is recorded and queued for `model` (kind: experiment | decode)."""
    return {"type": QUEUED, "job": job, "model": model, "kind": kind}


def started_event(job: str, worker: str, model: str, device: str) -> dict:
    """A worker holding `model` on `device` claimed the job."""
    return {"type": STARTED, "job": job, "worker": worker, "model": model, "device": device}


def experiment_started_event(progress: dict, manifest: str = "manifest.json") -> dict:
    """The experiment's inputs are ready and its manifest is written."""
    return {"type": EXPERIMENT_STARTED, "progress": progress, "manifest": manifest}


def trajectory_started_event(trajectory: str, kind: str, progress: dict) -> dict:
    """A trajectory (baseline or variant of `kind`) began denoising."""
    return {"type": TRAJECTORY_STARTED, "trajectory": trajectory, "kind": kind, "progress": progress}


def step_event(trajectory: str, record: dict, progress: dict) -> dict:
    """A captured step is stored; `record` is the step's manifest entry."""
    return {"type": STEP, "trajectory": trajectory, **record, "progress": progress}


def decode_event(**fields: Any) -> dict:
    """A full-quality decode is stored; `fields` name its trajectory, step and files."""
    return {"type": DECODE, **fields}


def trajectory_finished_event(
    trajectory: str, kind: str, final: Any, commitment_step: Any, convergence: Any, progress: dict
) -> dict:
    """A trajectory's final outputs and convergence curve are stored."""
    return {
        "type": TRAJECTORY_FINISHED,
        "trajectory": trajectory,
        "kind": kind,
        "final": final,
        "commitment_step": commitment_step,
        "convergence": convergence,
        "progress": progress,
    }


def metric_event(variant: str, summary: dict, progress: dict) -> dict:
    """A variant's comparison with the baseline is stored; `summary` is its manifest entry."""
    return {"type": METRIC, "variant": variant, **summary, "progress": progress}


def bench_instance_event(family: str, seed: int, difficulty: int, run: str, results: dict, progress: dict) -> dict:
    """A bench instance's run is stored in `run` (relative to the bench directory) and scored; `results` maps each
    trajectory to its `score` and `passed`; `progress` counts trajectory runs (instances × (baseline + variants))."""
    return {
        "type": BENCH_INSTANCE,
        "family": family,
        "seed": seed,
        "difficulty": difficulty,
        "run": run,
        "results": results,
        "progress": progress,
    }


def final_event(status: str, job: str, error: str | None = None, **fields: Any) -> dict:
    """The job's last event: `status` is one of FINAL_STATUSES."""
    if status not in TERMINAL:
        raise ValueError(f"status: {status!r} is not a final status ({', '.join(FINAL_STATUSES)})")
    event = {"type": status, "job": job, **fields}
    if error:
        event["error"] = error
    return event


def stream_closing_event(reason: str) -> dict:
    """Sent (without an id) to open SSE streams when the API shuts down; clients reconnect."""
    return {"type": STREAM_CLOSING, "reason": reason}


def is_final(event: dict) -> bool:
    """Whether `event` is a job's last one."""
    return event.get("type") in TERMINAL


# -- stream ids -------------------------------------------------------------------------------
def parse_stream_id(value: str) -> tuple[int, int] | None:
    """(milliseconds, sequence) of a stream id, or None if it is not one Redis could have made."""
    if not isinstance(value, str) or not _STREAM_ID.fullmatch(value):  # fullmatch: "$" would let "1-0\n" in
        return None
    ms, seq = (int(part) for part in value.split("-"))
    if ms > MAX_ID_PART or seq > MAX_ID_PART:
        return None
    return ms, seq


# -- the stream -------------------------------------------------------------------------------
def stream_key(job_id: str) -> str:
    return f"{PREFIX}:events:{job_id}"


def encode(event: dict) -> dict:
    return {"data": json.dumps(event, separators=(",", ":"), default=str)}


def from_entry(fields: dict) -> dict:
    """The event stored in one stream entry's fields."""
    raw = fields.get(b"data", fields.get("data"))
    return json.loads(raw)


def _id(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def publish(conn: redis.Redis, job_id: str, event: dict, ttl: int | None = None) -> str:
    """Append an event to the job's stream; returns its id. Sets the stream's TTL when given."""
    if event.get("type") not in EVENT_TYPES:
        raise ValueError(f"type: {event.get('type')!r} is not an event type of stepscope.events")
    key = stream_key(job_id)
    pipe = conn.pipeline(transaction=True)
    pipe.xadd(key, encode(event))
    if ttl:
        pipe.expire(key, ttl)
    return _id(pipe.execute()[0])


def read(conn: redis.Redis, job_id: str, after: str = "0-0", count: int = 1000) -> list[tuple[str, dict]]:
    """Events after `after` (exclusive), oldest first, without blocking."""
    entries = conn.xrange(stream_key(job_id), min=f"({after}" if after != "0-0" else "-", count=count)
    return [(_id(i), from_entry(f)) for i, f in entries]


def entries(reply) -> Iterator[tuple[str, dict]]:
    """(id, event) of every entry of an XREAD reply, oldest first."""
    for _, stream_entries in reply or []:
        for entry_id, fields in stream_entries:
            yield _id(entry_id), from_entry(fields)


def follow(conn: redis.Redis, job_id: str, after: str = "0-0", block_ms: int = 5000) -> Iterator[tuple[str, dict]]:
    """Every event after `after`, then live ones, until a final event (blocking reads).

    `conn` needs a socket timeout longer than `block_ms` (or none)."""
    key = stream_key(job_id)
    while True:
        reply = conn.xread({key: after}, count=500, block=block_ms)
        for after, event in entries(reply):  # noqa: B020 - reading on from the last entry seen
            yield after, event
            if is_final(event):
                return


def delete(conn: redis.Redis, job_id: str) -> None:
    conn.delete(stream_key(job_id))


# -- the frontend's copy ----------------------------------------------------------------------
def vocabulary_js() -> str:
    """frontend/contract/events.js: this module's vocabulary as an ES module."""
    types = (*EVENT_TYPES, STREAM_CLOSING)
    constants = [f"export const {n} = {json.dumps(v)};" for n, v in globals().items() if n.isupper() and v in types]
    return "\n".join(
        [
            "// Generated from backend/stepscope/events.py by `python -m stepscope.events`: do not edit.",
            "// tests/hardening/test_event_vocabulary.py fails when this file and events.py disagree.",
            "",
            *constants,
            "",
            "/** @typedef {" + "|".join(json.dumps(t) for t in types) + "} EventType */",
            "/** @typedef {{done: number, total: number}} Progress */",
            "/**",
            " * One event of a job's stream (the SSE `data`): `type` names it; which other fields it has depends on",
            " * the type (see the constructors in events.py).",
            " * @typedef {{type: EventType, progress?: Progress, trajectory?: string, kind?: string,",
            " *   step?: number|string, variant?: string, job?: string, error?: string|null,",
            " *   reason?: string}} JobEvent",
            " */",
            "",
            "/** Every event type a job's stream carries, in the order a job emits them. */",
            f"export const EVENT_TYPES = Object.freeze({json.dumps(list(EVENT_TYPES))});",
            "/** The final statuses of a job: its stream ends after one of these. */",
            f"export const FINAL_STATUSES = Object.freeze({json.dumps(list(FINAL_STATUSES))});",
            "/** @type {Set<string>} */",
            "export const TERMINAL = new Set(FINAL_STATUSES);",
            "",
        ]
    )


if __name__ == "__main__":
    print(vocabulary_js(), end="")
