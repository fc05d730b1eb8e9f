"""POST /api/jobs against a real API process (embedded Redis, no worker, production defaults):
the body limit holds while a chunked upload is read, model limits and strict types give 422
naming the field, and a full queue answers 429 with Retry-After."""

from __future__ import annotations

import base64
import io
import select
import socket
import time
from urllib.parse import urlsplit

import httpx
import pytest
import redis
from PIL import Image

from stepscope.config import Settings
from stepscope.jobs import queue_name
from stepscope.run_format import input_image_path, run_ref
from tests.servers import api_without_worker


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with api_without_worker(tmp_path_factory.mktemp("api")) as proc:
        yield proc


def png_data_url(colour=(200, 30, 30)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), colour).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_a_chunked_upload_is_refused_at_the_limit_not_after_reading_it(api):
    limit = Settings().max_upload_bytes + 2**20  # the production limit of a submission body
    total = 200 * 2**20
    boundary = "stepscopeboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="spec"\r\n\r\n{{}}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    url = urlsplit(api.url)
    sock = socket.create_connection((url.hostname, url.port), timeout=60)
    sent = 0
    try:
        sock.sendall(
            (
                "POST /api/jobs HTTP/1.1\r\n"
                f"Host: {url.netloc}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                "Transfer-Encoding: chunked\r\n\r\n"
            ).encode()
        )
        chunk = b"\0" * 2**18
        body = [head] + [chunk] * (total // len(chunk))
        for piece in body:
            if select.select([sock], [], [], 0)[0]:
                break  # the answer came: stop sending
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            except OSError:
                break  # the server closed the connection after answering
            sent += len(piece)
        response = b""
        while b"\r\n\r\n" not in response:
            data = sock.recv(65536)
            if not data:
                break
            response += data
    finally:
        sock.close()
    status_line = response.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 413"), response[:300]
    # The server stopped reading near the limit; before the fix it read (and spooled) all 200 MiB.
    assert sent < 3 * limit, f"sent {sent} bytes before the 413 (limit {limit})"


def test_a_spec_beyond_the_models_rotary_table_is_refused_at_submission(api):
    spec = {"model": "tiny", "height": 1280, "width": 1280, "frames": 241, "steps": 2}
    r = httpx.post(f"{api.url}/api/jobs", json=spec, timeout=30)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "frames"
    assert "at most 125" in r.json()["detail"]
    r = httpx.post(f"{api.url}/api/jobs", json={**spec, "frames": 17}, timeout=30)
    assert r.status_code == 422 and r.json()["field"] == "height"
    assert "at most 512" in r.json()["detail"]


@pytest.mark.parametrize(
    ("field", "value", "path"),
    [
        ("steps", True, "steps"),
        ("seed", "3", "seed"),
        ("guidance", False, "guidance"),
        ("probes", {"x0_arrays": 1}, "probes.x0_arrays"),
    ],
)
def test_numbers_and_booleans_are_strict(api, field, value, path):
    r = httpx.post(f"{api.url}/api/jobs", json={"model": "tiny", field: value}, timeout=30)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == path


def test_an_uploaded_swap_source_image_is_stored_once_under_its_field_name(api):
    spec = {
        "model": "tiny-i2v",
        "image": png_data_url(),
        "steps": 2,
        "variants": [
            {
                "name": "swap",
                "interventions": [
                    {"kind": "layer_swap", "layers": [1], "source": {"image": png_data_url((0, 90, 200))}}
                ],
            }
        ],
    }
    r = httpx.post(f"{api.url}/api/jobs", json=spec, timeout=30)
    assert r.status_code == 201, r.text
    job = r.json()
    field = "variants.0.interventions.0.source.image"
    assert job["spec"]["image"] == run_ref(input_image_path("image"))
    assert job["spec"]["variants"][0]["interventions"][0]["source"]["image"] == run_ref(input_image_path(field))
    inputs = sorted(p.name for p in (api.runs / job["id"] / "inputs").iterdir())
    assert inputs == sorted(p.split("/")[-1] for p in (input_image_path("image"), input_image_path(field)))
    assert httpx.delete(f"{api.url}/api/jobs/{job['id']}", timeout=30).status_code == 204


def test_a_full_queue_answers_429_with_retry_after(api):
    max_queued = Settings().max_queued  # the production default (1000)
    conn = redis.Redis.from_url(api.redis_url)
    key = f"rq:queue:{queue_name('tiny')}"
    conn.rpush(key, *[f"filler-{i}" for i in range(max_queued)])  # the queue RQ counts, filled directly
    try:
        started = time.monotonic()
        r = httpx.post(f"{api.url}/api/jobs", json={"model": "tiny", "steps": 2}, timeout=30)
        assert r.status_code == 429, r.text
        assert r.json()["field"] == "model" and "full" in r.json()["detail"]
        assert int(r.headers["retry-after"]) > 0
        assert time.monotonic() - started < 30
        conn.lpop(key)
        r = httpx.post(f"{api.url}/api/jobs", json={"model": "tiny", "steps": 2}, timeout=30)
        assert r.status_code == 201, r.text
    finally:
        conn.delete(key)
        conn.close()


def test_the_schemas_are_served(api):
    from stepscope.run_format import manifest_json_schema
    from stepscope.spec import ExperimentSpec

    spec = httpx.get(f"{api.url}/api/schema/spec", timeout=30)
    assert spec.status_code == 200 and spec.json() == ExperimentSpec.model_json_schema()
    kinds = spec.json()["$defs"]["Variant"]["properties"]["interventions"]["items"]["discriminator"]["mapping"]
    assert set(kinds) == {"noise_at_step", "noise_at_frame", "layer_swap", "seed_ensemble", "guidance"}
    manifest = httpx.get(f"{api.url}/api/schema/manifest", timeout=30)
    assert manifest.status_code == 200 and manifest.json() == manifest_json_schema()
