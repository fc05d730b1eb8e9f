"""The service end to end: real Redis, real workers, uvicorn on 127.0.0.1, the Python client."""

from __future__ import annotations

import base64
import io
import json
import socket
import struct
import time
import zlib

import httpx
import numpy as np
import pytest
import redis
from PIL import Image

import stepscope
from stepscope.client import ApiError, Client
from stepscope.config import Settings
from stepscope.jobs import Jobs, enqueue
from stepscope.store import new_run_id
from tests.servers import WorkerGate, service_env, start_api

SPEC = {"model": "tiny", "prompt": "a ball rolls through a maze", "steps": 6}


def run_to_end(client: Client, spec: dict) -> tuple[str, list[tuple[str, dict]]]:
    job = client.submit(spec)
    return job["id"], list(client.events(job["id"]))


def test_events_name_stored_artifacts_in_step_order(client, service):
    job_id, events = run_to_end(client, {**SPEC, "probes": {"decode_steps": [2]}})
    types = [e["type"] for _, e in events]
    assert types[0] == "queued" and types[1] == "started" and types[-1] == "finished"
    steps = [e for _, e in events if e["type"] == "step"]
    assert [s["index"] for s in steps] == list(range(6))
    assert all(s["trajectory"] == "baseline" for s in steps)
    ids = [i for i, _ in events]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-")))) and len(set(ids)) == len(ids)
    run = stepscope.load_run(str(service.store / job_id))
    for step in steps:
        assert {"sigma", "t", "expert", "timings"} <= set(step)
        for path in step["artifacts"].values():
            assert client.artifact(job_id, path) == run.dir.read_bytes(path)
    npy = httpx.get(f"{service.url}/api/jobs/{job_id}/artifacts/{steps[3]['artifacts']['layer_norms.cond']}")
    assert npy.headers["x-dtype"] == "<f4" and npy.headers["x-shape"] == "1,8,5,4,4"
    np.testing.assert_array_equal(np.load(io.BytesIO(npy.content)), run.baseline.layer_norms()[3])
    decode = [e for _, e in events if e["type"] == "decode" and e["step"] == 2]
    assert decode and client.artifact(job_id, f"{decode[0]['dir']}/frame_000.jpg")[:2] == b"\xff\xd8"
    assert client.job(job_id)["status"] == "finished"
    assert client.manifest(job_id)["status"] == "finished"


@pytest.fixture(scope="module")
def spec_run(service) -> tuple[str, list[tuple[str, dict]]]:
    """One finished run of SPEC and the events its stream sent live, read by several tests (none changes it)."""
    with Client(service.url) as client:
        return run_to_end(client, SPEC)


def test_reconnect_with_last_event_id_gets_exactly_the_rest(client, spec_run):
    job_id, full = spec_run
    cut = len(full) // 2
    rest = list(client.events(job_id, last_event_id=full[cut - 1][0]))
    assert [i for i, _ in rest] == [i for i, _ in full[cut:]]


def test_reconnect_mid_stream_while_running(client, service):
    tiny = next(w for w in service.workers if w.log.name == "worker-tiny.log")
    with WorkerGate(tiny, client) as gate:
        gate.hold()
        job = client.submit({**SPEC, "steps": 16})
        gate.run_to(job["id"], 3)  # the worker is frozen after step 3: the connection drops mid-run for certain
        first = []
        for event_id, event in client.events(job["id"]):
            first.append((event_id, event))
            if event["type"] == "step" and event["index"] == 3:
                break  # drop the connection mid-run
        assert client.job(job["id"])["status"] == "running"
    # The worker goes on while the client reconnects.
    rest = list(client.events(job["id"], last_event_id=first[-1][0]))
    assert rest[-1][1]["type"] == "finished"
    full = list(client.events(job["id"]))
    assert [i for i, _ in first + rest] == [i for i, _ in full]
    assert [e["index"] for _, e in first + rest if e["type"] == "step"] == list(range(16))


def test_late_viewer_gets_the_whole_stream(client, spec_run):
    job_id, live = spec_run
    late = list(client.events(job_id))
    assert late == live


def test_sse_wire_format_and_heartbeat(service, client):
    job = client.submit({**SPEC, "steps": 3})
    client.wait(job["id"])
    with httpx.stream("GET", f"{service.url}/api/jobs/{job['id']}/events") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        text = r.read().decode()
    assert text.startswith("retry: 2000")
    blocks = [b for b in text.split("\n\n") if b.startswith("id:")]
    first = blocks[0].splitlines()
    assert first[0].startswith("id: ") and first[1] == "event: queued" and first[2].startswith("data: {")
    bad = httpx.get(f"{service.url}/api/jobs/{job['id']}/events", headers={"Last-Event-ID": "nope"})
    assert bad.status_code == 400 and bad.json()["field"] == "Last-Event-ID"


def test_heartbeats_while_queued(service):
    # A job for a model no worker serves stays queued; its stream sends heartbeat comments.
    job = httpx.post(f"{service.url}/api/jobs", json={**SPEC, "model": "tiny-moe"}).json()
    assert "warning" in job
    chunks = []
    with httpx.stream("GET", f"{service.url}/api/jobs/{job['id']}/events", timeout=10) as r:
        start = time.monotonic()
        for chunk in r.iter_text():
            chunks.append(chunk)
            if ": heartbeat" in "".join(chunks) or time.monotonic() - start > 8:
                break
    assert ": heartbeat" in "".join(chunks)
    assert httpx.post(f"{service.url}/api/jobs/{job['id']}/cancel").json()["status"] == "cancelled"


def test_cancel_a_running_job_stops_within_a_step(client, service):
    tiny = next(w for w in service.workers if w.log.name == "worker-tiny.log")
    with WorkerGate(tiny, client) as gate:
        gate.hold()
        job = client.submit({**SPEC, "steps": 200, "probes": {"layers": "none"}})
        gate.run_to(job["id"], 3)  # frozen mid-run, with ~196 steps to go: the cancel lands while the job runs
        answer = client.cancel(job["id"])
        assert answer["status"] == "running" and answer["cancel_requested"], answer
    events = list(client.events(job["id"]))
    final = events[-1][1]
    assert final["type"] == "cancelled"
    steps = [e["index"] for _, e in events if e["type"] == "step"]
    last_step = steps[-1]
    assert steps == list(range(last_step + 1)) and last_step < 199, "it stopped early, every step before stored"
    # The worker names the step at whose end it saw the request; that step is the last one stored. (That the request
    # is looked at after every step is tests/probe/test_capture.py's test_a_stop_request_ends_the_run_after_its_step.)
    assert final["error"] == f"cancelled after step {last_step}"
    assert client.job(job["id"])["status"] == "cancelled"
    manifest = client.manifest(job["id"])
    assert manifest["status"] == "cancelled"
    assert len(manifest["trajectories"]["baseline"]["steps"]) == last_step + 1
    with pytest.raises(ApiError) as err:
        client.cancel(job["id"])
    assert err.value.status == 409


def test_cancel_a_queued_job(service, client):
    job = client.submit({**SPEC, "model": "tiny-euler"})  # no worker serves it
    assert client.job(job["id"])["position"] == 0
    assert client.cancel(job["id"])["status"] == "cancelled"
    assert [e["type"] for _, e in client.events(job["id"])] == ["queued", "cancelled"]


def test_a_failing_model_fails_the_job_and_the_worker_goes_on(client, spec_run):
    bad_id, bad = run_to_end(client, {**SPEC, "model": "tiny-faulty", "prompt": "[fault] a maze"})
    assert bad[-1][1]["type"] == "failed"
    assert "CUDA error" in bad[-1][1]["error"]
    record = client.job(bad_id)
    assert record["status"] == "failed" and "simulated" in record["error"]
    assert client.manifest(bad_id)["status"] == "failed"
    good_id, good = run_to_end(client, {**SPEC, "model": "tiny-faulty"})
    assert good[-1][1]["type"] == "finished"
    ref_id, _ = spec_run  # tiny: the same weights as tiny-faulty
    final = "trajectories/baseline/final/latents.npy"
    # Two workers on one machine: weights built from one seed, the same shapes and kernels, so bitwise equal.
    np.testing.assert_array_equal(client.array(good_id, final), client.array(ref_id, final))


def test_a_record_the_api_did_not_check_fails_its_job_naming_the_field(client, service):
    """The worker checks a job record's spec itself (it may come from another version, or from anyone who can write
    to Redis): one that names a layer tiny lacks fails with the field named, and the worker goes on."""
    conn, job_id, defaults = redis.Redis.from_url(service.redis_url), new_run_id(), Settings()
    Jobs(conn).create(job_id, "tiny", {**SPEC, "steps": 2, "probes": {"layers": [99]}})
    enqueue(conn, job_id, "tiny", defaults.job_timeout, defaults.result_ttl)
    last = list(client.events(job_id))[-1][1]
    assert last["type"] == "failed" and "SpecError: probes.layers: layer 99 is beyond" in last["error"], last
    assert run_to_end(client, {**SPEC, "steps": 2})[1][-1][1]["type"] == "finished"


def _png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def _bomb_png(width: int = 60000, height: int = 60000) -> bytes:
    """A tiny PNG whose header claims a huge image (the pixels are never there)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({**SPEC, "steps": 0}, 422, "steps"),
        ({**SPEC, "model": "no-such-model"}, 422, "model"),
        ({**SPEC, "height": 100000}, 422, "height"),
        ({**SPEC, "probes": {"layers": [99]}}, 422, "probes.layers"),
        ({**SPEC, "image": "data:image/png;base64,AAAA"}, 422, "image"),  # tiny is text-to-video
        (
            {
                **SPEC,
                "variants": [{"name": "v", "interventions": [{"kind": "noise_at_step", "steps": [9], "strength": 1}]}],
            },
            422,
            "variants.0.interventions.0.steps",
        ),
        ([1, 2, 3], 422, "spec"),
    ],
)
def test_invalid_specs_get_4xx_naming_the_field(service, body, status, field):
    r = httpx.post(f"{service.url}/api/jobs", json=body)
    assert r.status_code == status, r.text
    assert r.json()["field"] == field
    assert field.split(".")[0] in r.json()["detail"]


def test_malformed_bodies(service):
    r = httpx.post(f"{service.url}/api/jobs", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["field"] == "body"
    r = httpx.post(f"{service.url}/api/jobs", content=b"x", headers={"content-type": "text/plain"})
    assert r.status_code == 415
    # A client announcing a gigabyte is refused before anything is read.
    host, port = service.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /api/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000000000\r\n\r\n{}"
        )
        assert sock.recv(200).startswith(b"HTTP/1.1 413")
    # ... and one that streams more than the limit without announcing it is cut off.
    r = httpx.post(
        f"{service.url}/api/jobs",
        content=iter([b"[" + b"1," * 12_000_000 + b"1]"]),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413


I2V = {"model": "tiny-i2v", "prompt": "solve the maze", "steps": 4}


@pytest.mark.parametrize(
    ("payload", "status", "words"),
    [
        (b"this is not an image at all", 422, "not a readable image"),
        (_bomb_png(), 422, "decompression bomb"),
        (_png(5000, 4000), 422, "larger than"),
        (b"", 422, "empty"),
    ],
    ids=["not-an-image", "bomb", "huge", "empty"],
)
def test_bad_uploads_are_refused(service, payload, status, words):
    r = httpx.post(
        f"{service.url}/api/jobs",
        data={"spec": json.dumps(I2V)},
        files={"image": ("frame.png", payload, "image/png")},
    )
    assert r.status_code == status, r.text
    assert r.json()["field"] == "image" and words in r.json()["detail"]


def test_oversized_upload_is_refused(service):
    big = b"\x89PNG" + b"\x00" * (21 * 2**20)
    r = httpx.post(f"{service.url}/api/jobs", data={"spec": json.dumps(I2V)}, files={"image": ("f.png", big)})
    assert r.status_code == 413


def test_i2v_upload_is_stored_with_the_run(service, client):
    job = client.submit(I2V, image=_png(64, 64))
    assert job["spec"]["image"] == "run:inputs/first_frame.png"
    stored = Image.open(io.BytesIO(client.artifact(job["id"], "inputs/first_frame.png")))
    assert stored.size == (64, 64)
    # the same image as a data URL in JSON is accepted too
    url = "data:image/png;base64," + base64.b64encode(_png(32, 32)).decode()
    job2 = client.submit({**I2V, "image": url})
    assert job2["spec"]["image"] == "run:inputs/first_frame.png"
    for j in (job, job2):
        client.cancel(j["id"])  # no tiny-i2v worker runs in this session


def test_image_paths_in_json_are_refused(service):
    r = httpx.post(f"{service.url}/api/jobs", json={**I2V, "image": "/etc/passwd"})
    assert r.status_code == 422 and r.json()["field"] == "image"


@pytest.fixture(scope="module")
def finished_job(service) -> str:
    """A finished 2-step job whose run directory the path tests try to escape (one for all of them)."""
    with Client(service.url) as client:
        job_id, events = run_to_end(client, {**SPEC, "steps": 2})
    assert events[-1][1]["type"] == "finished", events[-1]
    # The control: a path inside the run is served, so a 404 below is the path refused, not a missing job.
    assert httpx.get(f"{service.url}/api/jobs/{job_id}/artifacts/manifest.json").status_code == 200
    return job_id


@pytest.mark.parametrize(
    "path",
    [
        "../manifest.json",
        "..%2F..%2Fetc%2Fpasswd",
        "%2e%2e/%2e%2e/etc/passwd",
        "%252e%252e/x",
        "/etc/passwd",
        "trajectories/../../x",
        "a\\..\\b",
    ],
)
def test_artifact_paths_cannot_escape(service, finished_job, path):
    r = httpx.get(f"{service.url}/api/jobs/{finished_job}/artifacts/{path}")
    assert r.status_code in (400, 404), (path, r.status_code)
    assert "root:" not in r.text


def test_unknown_ids_are_404(service):
    for method, path in [
        ("GET", "/api/jobs/nope"),
        ("POST", "/api/jobs/nope/cancel"),
        ("DELETE", "/api/jobs/nope"),
        ("GET", "/api/jobs/nope/events"),
        ("GET", "/api/jobs/nope/manifest"),
        ("GET", "/api/jobs/nope/artifacts/manifest.json"),
    ]:
        r = httpx.request(method, f"{service.url}{path}")
        assert r.status_code == 404, (method, path)
        assert "nope" in r.json()["detail"]


def test_delete_removes_record_events_and_run(service, client):
    job_id, _ = run_to_end(client, {**SPEC, "steps": 2})
    assert (service.store / job_id / "manifest.json").exists()
    client.delete(job_id)
    assert not (service.store / job_id).exists()
    with pytest.raises(ApiError) as err:
        client.job(job_id)
    assert err.value.status == 404


def test_list_models_health_and_openapi(service, client):
    names = {m["name"]: m for m in client.models()}
    assert names["tiny"]["workers"] == 1 and names["tiny-faulty"]["workers"] == 1
    assert names["wan2.2-i2v-a14b"]["num_layers"] == 40
    health = client.health()
    assert health["status"] == "ok" and health["queues"]["stepscope:tiny"]["workers"] == 1
    assert (health["ready"], health["waiting_for"]) == (True, [])  # STEPSCOPE_MODELS: tiny, which a worker serves
    schema = httpx.get(f"{service.url}/openapi.json").json()
    assert "/api/jobs" in schema["paths"] and "ExperimentSpec" in schema["components"]["schemas"]
    listed = client.jobs(limit=5)
    assert 1 <= len(listed) <= 5 and listed == sorted(listed, key=lambda j: j["created"], reverse=True)


def test_client_wait_and_arrays_match_the_run_directory(client, service):
    job = client.submit({**SPEC, "steps": 4})
    final = client.wait(job["id"])
    assert final["status"] == "finished" and final["progress"] == {"done": 4, "total": 4}
    run = stepscope.load_run(str(service.store / job["id"]))
    np.testing.assert_array_equal(client.array(job["id"], "trajectories/baseline/x0/step_002.npy"), run.baseline.x0[2])


def test_token_is_required_on_every_api_route(service, tmp_path):
    env = service_env(service.redis_url, str(service.store), str(tmp_path / "cache"), STEPSCOPE_TOKEN="s3cret")
    api = start_api(env, tmp_path / "api-token.log")
    try:
        schema = httpx.get(f"{api.url}/openapi.json", headers={"Authorization": "Bearer s3cret"}).json()
        for path, methods in schema["paths"].items():
            concrete = path.replace("{job_id}", "x").replace("{path}", "manifest.json")
            for method in methods:
                r = httpx.request(method.upper(), f"{api.url}{concrete}")
                assert r.status_code == 401, (method, path, r.status_code)
                wrong = httpx.request(method.upper(), f"{api.url}{concrete}", headers={"Authorization": "Bearer no"})
                assert wrong.status_code == 401
        with Client(api.url, token="s3cret") as authed:
            assert authed.health()["auth"] is True
            job = authed.submit({**SPEC, "steps": 2})
            assert authed.wait(job["id"])["status"] == "finished"
        cookie = httpx.get(f"{api.url}/api/jobs", cookies={"stepscope_token": "s3cret"})
        assert cookie.status_code == 200
    finally:
        api.stop()


def test_the_api_binds_localhost_by_default():
    from stepscope.config import Settings

    assert Settings().host == "127.0.0.1"


def test_progress_is_visible_while_running(client, service):
    tiny = next(w for w in service.workers if w.log.name == "worker-tiny.log")
    with WorkerGate(tiny, client) as gate:
        gate.hold()
        job = client.submit({**SPEC, "steps": 60, "probes": {"layers": "none"}})
        step = gate.run_to(job["id"], 5)  # frozen mid-run: the record is read while the job runs, for certain
        record = client.job(job["id"])
        assert record["status"] == "running" and record["progress"]["total"] == 60
        # The record's progress follows the events: at least the steps before the one just seen (its own update may
        # come a moment after its event).
        assert step["progress"]["done"] - 1 <= record["progress"]["done"] < 60
        client.cancel(job["id"])
    assert client.wait(job["id"])["status"] == "cancelled"


def test_full_quality_decode_on_request(client, service):
    job_id, _ = run_to_end(client, {**SPEC, "steps": 4})
    r = httpx.post(f"{service.url}/api/jobs/{job_id}/decodes", json={"trajectory": "baseline", "step": 1})
    assert r.status_code == 202, r.text
    decode_job = r.json()
    assert decode_job["kind"] == "decode" and decode_job["parent"] == job_id
    events = [e for _, e in client.events(decode_job["id"])]
    assert [e["type"] for e in events] == ["queued", "started", "decode", "finished"]
    entry = events[2]
    assert entry["step"] == 1 and entry["frames"] == 17
    frame = Image.open(io.BytesIO(client.artifact(job_id, f"{entry['dir']}/frame_016.jpg")))
    assert frame.size == (64, 64)
    again = httpx.post(f"{service.url}/api/jobs/{job_id}/decodes", json={"trajectory": "baseline", "step": 1})
    assert again.status_code == 200 and again.json()["decode"]["dir"] == entry["dir"]
    listed = httpx.get(f"{service.url}/api/jobs/{job_id}/decodes").json()["decodes"]
    steps = {(d["trajectory"], str(d["step"])): d["dir"] for d in listed}
    assert steps[("baseline", "1")] == entry["dir"]  # requested after the run
    assert steps[("baseline", "final")] == "trajectories/baseline/final"  # made during it
    # decode jobs do not crowd the job list
    assert all(j["kind"] == "experiment" for j in client.jobs(limit=50))
    for body, field in [
        ({"trajectory": "baseline", "step": 9}, "step"),
        ({"trajectory": "nope", "step": 0}, "trajectory"),
        ({"trajectory": "baseline", "step": -1}, "step"),
        ({"step": 0, "extra": 1}, "extra"),
    ]:
        bad = httpx.post(f"{service.url}/api/jobs/{job_id}/decodes", json=body)
        assert bad.status_code == 422 and bad.json()["field"] == field, (body, bad.text)
