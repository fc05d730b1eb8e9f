"""Property: whatever manifest and files a run directory holds, no job route answers 5xx, and nothing outside the data
directory is ever served.

Hypothesis generates a run directory — a valid manifest with one value somewhere replaced by arbitrary JSON, or a
manifest that is arbitrary JSON, or bytes; previews that are PNGs, garbage, directories, FIFOs or symlinks (into the
run, or to a file outside the data directory holding a marker); a bench summary that is JSON, NaN or not text — with no
job record, or one of an experiment or a bench, and every job route is asked about it. A fixed seed (derandomize)
and a modest example count keep it deterministic and well under a minute.
"""

from __future__ import annotations

import io
import json
import os
import uuid

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from stepscope import run_format as rf
from stepscope.jobs import Jobs
from tests.runs import manifest, step_record
from tests.servers import api_without_worker

MARKER = b"OUTSIDE-THE-DATA-DIRECTORY"

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)

# Where a valid manifest gets its one arbitrary value: the fields the routes read.
MUTATION_PATHS = [
    ("status",),
    ("spec",),
    ("spec", "steps"),
    ("created",),
    ("error",),
    ("shapes",),
    ("shapes", "latent"),
    ("trajectories",),
    ("trajectories", "baseline"),
    ("trajectories", "baseline", "steps"),
    ("trajectories", "baseline", "steps", 0),
    ("trajectories", "baseline", "steps", 0, "index"),
    ("trajectories", "baseline", "steps", 0, "sigma"),
    ("trajectories", "baseline", "steps", 0, "artifacts"),
    ("trajectories", "baseline", "steps", 0, "artifacts", "preview"),
    ("trajectories", "baseline", "seeds"),
    ("trajectories", "baseline", "decodes"),
    ("format",),
]

PREVIEW_KINDS = ["png", "garbage", "missing", "directory", "fifo", "symlink-outside", "symlink-inside", "huge-png"]


@st.composite
def run_directories(draw):
    """(manifest bytes, preview kinds per step, with a record, the manifest as a symlink to outside)."""
    steps = draw(st.integers(1, 3))
    records = [step_record(i, steps, {"preview": rf.preview_path("baseline", i)}) for i in range(steps)]
    data = manifest("x", steps, [16, 1, 2, 2], records, status=draw(st.sampled_from(["finished", "failed", "running"])))
    shape = draw(st.sampled_from(["valid", "mutated", "mutated", "arbitrary", "bytes"]))
    if shape == "mutated":
        path = draw(st.sampled_from(MUTATION_PATHS))
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = draw(json_values)
    if shape == "arbitrary":
        data = draw(json_values)
    raw = draw(st.binary(max_size=64)) if shape == "bytes" else json.dumps(data).encode()
    previews = draw(st.lists(st.sampled_from(PREVIEW_KINDS), min_size=steps, max_size=steps))
    record = draw(st.sampled_from([None, "experiment", "bench"]))
    summary = draw(st.sampled_from([None, b'{"complete": false}', b'{"rate": NaN}', b"\xff\xfe not json"]))
    return raw, previews, record, draw(st.booleans()) and shape == "valid", summary


def png_of_size(width: int, height: int, colour=(40, 90, 160)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buf, "PNG")
    return buf.getvalue()


def png(side: int, colour=(40, 90, 160)) -> bytes:
    return png_of_size(side, side, colour)


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with api_without_worker(tmp_path_factory.mktemp("property")) as proc:
        proc.outside = proc.root / "outside"
        proc.outside.mkdir()
        (proc.outside / "secret.png").write_bytes(png(8, (255, 0, 255)) + MARKER)
        (proc.outside / "manifest.json").write_bytes(MARKER)
        yield proc


def build(api, job_id: str, raw: bytes, previews: list[str], manifest_outside: bool, summary: bytes | None) -> None:
    run = api.runs / job_id
    run.mkdir(parents=True)
    if summary is not None:  # a bench job's summary and table, as the worker writes them or not
        (run / rf.BENCH_SUMMARY).write_bytes(summary)
        (run / rf.BENCH_TABLE).write_bytes(summary)
    if manifest_outside:
        (run / "manifest.json").symlink_to(api.outside / "manifest.json")
    else:
        (run / "manifest.json").write_bytes(raw)
    for index, kind in enumerate(previews):
        path = run / rf.preview_path("baseline", index)
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "png":
            path.write_bytes(png(16))
        elif kind == "garbage":
            path.write_bytes(b"\x89PNG not really")
        elif kind == "directory":
            path.mkdir()
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "symlink-outside":
            path.symlink_to(api.outside / "secret.png")
        elif kind == "symlink-inside":
            path.symlink_to(run / "manifest.json")
        elif kind == "huge-png":
            path.write_bytes(png_of_size(5000, 1))  # wider than the export's 4096-pixel side


ROUTES = [
    ("GET", "", {}),
    ("GET", "/manifest", {}),
    ("GET", "/files", {}),
    ("GET", "/artifacts/manifest.json", {}),
    ("GET", f"/artifacts/{rf.preview_path('baseline', 0)}", {}),
    ("GET", "/events", {}),
    ("GET", "/decodes", {}),
    ("POST", "/decodes", {"json": {"trajectory": "baseline", "step": 0}}),
    ("GET", "/export/bundle.zip", {}),
    ("GET", "/export/grid.gif", {"params": {"scale": 1}}),
    ("GET", "/export/grid.mp4", {"params": {"scale": 1}}),
    ("GET", "bench", {}),
    ("POST", "/cancel", {}),
    ("DELETE", "", {}),
]


@settings(
    max_examples=50,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=run_directories())
def test_no_route_answers_5xx_or_serves_what_is_outside(api, case):
    raw, previews, record, manifest_outside, summary = case
    job_id = uuid.uuid4().hex
    build(api, job_id, raw, previews, manifest_outside, summary)
    if record is not None:
        Jobs(api.conn).create(job_id, "tiny", {"model": "tiny"}, kind=record)
    answers = []
    with httpx.Client(base_url=api.url, timeout=60) as http:
        for method, suffix, options in ROUTES:
            path = f"/api/bench/{job_id}" if suffix == "bench" else f"/api/jobs/{job_id}{suffix}"
            with http.stream(method, path, **options) as r:
                body = b""
                for block in r.iter_bytes():
                    body += block
                    if suffix == "/events":  # a running job's stream stays open: its status is what is checked
                        break
                answers.append((method, path, r.status_code, body))
    for method, path, status, body in answers:
        assert status < 500, (method, path, status, body[:300])
        assert MARKER not in body, (method, path, status)
        if 400 <= status < 500 and method != "HEAD":
            assert "detail" in json.loads(body), (method, path, body[:200])  # the documented JSON error body
