"""Stored runs shaped by someone who can write into the data directory, and requests an attacker would send: nothing
outside the data directory is read or served, no manifest costs the API more than its size limit, a bad manifest is a
4xx naming the problem (never a 500), and the odd requests of issue #31 are answered as docs/api.md says.

One API process with production defaults and no worker (nothing here runs a model): embedded Redis, a store in a
temporary directory, and an `outside` directory next to it.
"""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from PIL import Image

from stepscope import run_format as rf
from stepscope.jobs import Jobs, job_key
from stepscope.store import MAX_MANIFEST_BYTES
from tests.runs import manifest, write_run
from tests.servers import api_without_worker

SECRET = "the secret outside the data directory"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with api_without_worker(tmp_path_factory.mktemp("hostile")) as proc:
        proc.outside = proc.root / "outside"
        proc.outside.mkdir()
        yield proc


def job_routes(job_id: str) -> list[tuple[str, str, dict]]:
    """Every route of one job, as (method, path, request options); DELETE last, as it removes what it finds."""
    base = f"/api/jobs/{job_id}"
    return [
        ("GET", base, {}),
        ("GET", f"{base}/manifest", {}),
        ("GET", f"{base}/files", {}),
        ("GET", f"{base}/artifacts/manifest.json", {}),
        ("HEAD", f"{base}/artifacts/{rf.preview_path('baseline', 0)}", {}),
        ("GET", f"{base}/artifacts/secret.json", {}),
        ("GET", f"{base}/events", {"params": {"after": "0-0"}}),
        ("GET", f"{base}/decodes", {}),
        ("POST", f"{base}/decodes", {"json": {"trajectory": "baseline", "step": 0}}),
        ("GET", f"{base}/export/bundle.zip", {}),
        ("GET", f"{base}/export/grid.gif", {}),
        ("GET", f"{base}/export/grid.mp4", {}),
        ("GET", f"/api/bench/{job_id}", {}),
        ("POST", f"{base}/cancel", {}),
        ("DELETE", base, {}),
    ]


def request_all(api, job_id: str, delete: bool = True) -> list[tuple[str, int, bytes]]:
    """(route, status, first bytes of the body) of every job route, on one keep-alive connection."""
    answers = []
    with httpx.Client(base_url=api.url, timeout=60) as http:
        for method, path, options in job_routes(job_id):
            if method == "DELETE" and not delete:
                continue
            with http.stream(method, path, **options) as r:
                body = b""
                for block in r.iter_bytes():  # an SSE stream that stays open is cut after its first bytes
                    body += block
                    if path.endswith("/events") or len(body) > 1 << 16:
                        break
                answers.append((f"{method} {path}", r.status_code, body))
    return answers


def no_server_errors(answers) -> None:
    bad = [(route, status, body[:200]) for route, status, body in answers if status >= 500]
    assert not bad, bad


def test_a_symlinked_run_directory_is_no_run(api):
    outside = api.outside / "run-r"
    write_run(outside, 2, 32)
    (outside / "secret.json").write_text(json.dumps({"secret": SECRET}))
    (api.runs / "r").symlink_to(outside)
    answers = request_all(api, "r")
    no_server_errors(answers)
    for route, status, body in answers:
        assert status == 404, (route, status)
        assert SECRET.encode() not in body and b"made by hand" not in body, route
    assert api.conn.exists(job_key("r")) == 0  # not adopted
    assert outside.is_dir() and (outside / "secret.json").exists()  # DELETE removed nothing outside
    assert not (api.runs / "r").exists() or (api.runs / "r").is_symlink()


def test_a_symlinked_manifest_is_not_followed_during_adoption(api):
    (api.runs / "m").mkdir()
    real = api.outside / "manifest.json"
    data = manifest("m", 2, [16, 1, 4, 4], [], status="failed")
    data["error"] = SECRET
    real.write_text(json.dumps(data))
    (api.runs / "m" / "manifest.json").symlink_to(real)
    r = httpx.get(f"{api.url}/api/jobs/m", timeout=30)
    assert r.status_code == 404 and SECRET not in r.text
    assert api.conn.exists(job_key("m")) == 0 and api.conn.exists("stepscope:events:m") == 0  # no `failed` event


def test_exports_do_not_follow_symlinked_previews(api, tmp_path):
    job_id = "exports-" + os.urandom(4).hex()
    write_run(api.runs / job_id, 3, 32)
    outside_png = api.outside / "outside.png"
    Image.new("RGB", (32, 32), (255, 0, 255)).save(outside_png)
    for index in range(3):
        preview = api.runs / job_id / rf.preview_path("baseline", index)
        preview.unlink()
        preview.symlink_to(outside_png)
    for name in ("grid.gif", "grid.mp4"):
        r = httpx.get(f"{api.url}/api/jobs/{job_id}/export/{name}", timeout=60)
        assert r.status_code == 409 and r.json()["field"] == "job_id", (name, r.status_code, r.text[:200])
        assert "does not hold" in r.json()["detail"]
    r = httpx.get(f"{api.url}/api/jobs/{job_id}/artifacts/{rf.preview_path('baseline', 0)}", timeout=30)
    assert r.status_code == 404


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def test_a_huge_manifest_is_refused_by_its_size_without_reading_it(api):
    job_id = "huge-" + os.urandom(4).hex()
    (api.runs / job_id).mkdir()
    with open(api.runs / job_id / "manifest.json", "wb") as f:
        f.write(b'{"status": "finished", "pad": "')
        f.truncate(1 << 30)  # 1 GiB, sparse: costs no disk
    before = rss_kib(api.pid)
    answers = [httpx.get(f"{api.url}/api/jobs/{job_id}", timeout=60) for _ in range(4)]
    for r in answers:
        assert r.status_code == 404, r.text[:200]
        assert f"over the {MAX_MANIFEST_BYTES} byte limit" in r.json()["detail"]
    grown_mib = (rss_kib(api.pid) - before) / 1024
    # The cap is 16 MiB, read at most once; reading the whole file (as before) took 1.3 GB.
    assert grown_mib < 2 * MAX_MANIFEST_BYTES / 2**20 + 32, f"the API grew by {grown_mib:.0f} MiB"
    # A job with a record whose manifest grew huge: its raw manifest is still served (as a file), exports say why not.
    Jobs(api.conn).create(job_id, "tiny", {"model": "tiny"})
    r = httpx.get(f"{api.url}/api/jobs/{job_id}/export/grid.gif", timeout=60)
    assert r.status_code == 409 and r.json()["field"] == "manifest" and "byte limit" in r.json()["detail"]


def test_the_manifest_cache_parses_each_version_once(tmp_path):
    from stepscope.api.deps import ManifestCache
    from stepscope.store import Store

    store = Store(str(tmp_path / "runs"))
    write_run(tmp_path / "runs" / "cached", 2, 32)
    cache = ManifestCache()
    run = store.open("cached")
    first = cache.get(run)
    assert cache.get(run) is first  # the same version: not parsed again
    path = tmp_path / "runs" / "cached" / "manifest.json"
    data = json.loads(path.read_text())
    data["status"] = "failed"
    path.write_text(json.dumps(data))
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))  # a new mtime even on a coarse clock
    assert cache.get(run).status == "failed"


BAD_MANIFESTS = {
    "non-string status": lambda m: {**m, "status": ["finished"]},
    "status not a status": lambda m: {**m, "status": "done"},
    "trajectories as a list": lambda m: {**m, "trajectories": ["baseline"]},
    "steps as a string": lambda m: {**m, "trajectories": {"baseline": {**m["trajectories"]["baseline"], "steps": "x"}}},
    "not an object": lambda m: [m],
    "no format": lambda m: {k: v for k, v in m.items() if k != "format"},
    "the minimal one of the report": lambda m: {"status": ["finished"], "spec": {"model": "tiny"}},
}


@pytest.mark.parametrize("name", list(BAD_MANIFESTS))
def test_a_bad_manifest_is_a_4xx_naming_the_problem_on_every_route(api, name):
    job_id = "bad-" + os.urandom(4).hex()
    good = write_run(api.runs / job_id, 2, 32)
    (api.runs / job_id / "manifest.json").write_text(json.dumps(BAD_MANIFESTS[name](good)))
    first = httpx.get(f"{api.url}/api/jobs/{job_id}", timeout=30)
    assert first.status_code == 404 and "cannot be adopted: manifest.json" in first.json()["detail"], first.text
    answers = request_all(api, job_id, delete=False)
    no_server_errors(answers)
    assert all(400 <= status < 500 for _, status, _ in answers), [(r, s) for r, s, _ in answers]
    # With a record (the job ran here, then its manifest went bad): the routes that read the manifest say why.
    Jobs(api.conn).create(job_id, "tiny", {"model": "tiny"})
    answers = request_all(api, job_id)
    no_server_errors(answers)
    for route, status, body in answers:
        if route.endswith(("/export/grid.gif", "/export/grid.mp4", "/decodes")) and status == 409:
            assert json.loads(body)["field"] == "manifest" and "manifest.json" in json.loads(body)["detail"]


def test_a_bench_variant_that_cannot_run_is_refused_at_submission(api):
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 200, 10)).save(buf, "PNG")
    data_url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    swap = {"kind": "layer_swap", "layers": [0], "steps": [0], "source": {"prompt": "b", "image": "/etc/passwd"}}
    body = {"model": "tiny-i2v", "tasks": ["maze"], "n": 1, "variants": [{"name": "swap", "interventions": [swap]}]}
    r = httpx.post(f"{api.url}/api/bench", json=body, timeout=30)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "variants.0.interventions.0.source.image" and "data:image" in r.json()["detail"]
    # The same variant in a job: refused the same way.
    job = {"model": "tiny-i2v", "image": data_url, "variants": body["variants"]}
    r = httpx.post(f"{api.url}/api/jobs", json=job, timeout=30)
    assert r.status_code == 422 and r.json()["field"] == "variants.0.interventions.0.source.image", r.text
    # A data URL is accepted: the request is queued (no worker here: it waits).
    swap["source"]["image"] = data_url
    r = httpx.post(f"{api.url}/api/bench", json=body, timeout=30)
    assert r.status_code == 201, r.text


def test_decode_requests_malformed_or_loosely_typed_are_refused_as_documented(api):
    job_id = "decodes-" + os.urandom(4).hex()
    write_run(api.runs / job_id, 2, 32)
    url = f"{api.url}/api/jobs/{job_id}/decodes"
    r = httpx.post(url, content=b"[", headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 400 and r.json()["field"] == "body", r.text
    for step in (True, "3", 1.5):
        r = httpx.post(url, json={"step": step}, timeout=30)
        assert r.status_code == 422 and r.json()["field"] == "step", (step, r.text)


def test_stream_ids_take_ascii_digits_only(api):
    job_id = "ids-" + os.urandom(4).hex()
    write_run(api.runs / job_id, 2, 32)
    for after in ("１-0", "1-0\n", "٣-0"):
        r = httpx.get(f"{api.url}/api/jobs/{job_id}/events", params={"after": after}, timeout=30)
        assert r.status_code == 400 and r.json()["field"] == "after", (after, r.status_code)


def test_nan_and_infinity_are_named_as_not_finite(api):
    for value in ("NaN", "Infinity", "-Infinity"):
        body = f'{{"model": "tiny", "guidance": {value}}}'
        r = httpx.post(f"{api.url}/api/jobs", content=body, headers={"content-type": "application/json"}, timeout=30)
        assert r.status_code == 422 and r.json()["field"] == "guidance", r.text
        assert "finite" in r.json()["detail"], r.text


def test_health_while_redis_is_down_says_when_to_retry(tmp_path):
    from fastapi.testclient import TestClient

    from stepscope.api.app import create_app
    from stepscope.config import Settings
    from stepscope.embedded_redis import free_port

    settings = Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0", store=str(tmp_path / "runs"))
    with TestClient(create_app(settings)) as client:
        r = client.get("/api/health")
    assert r.status_code == 503 and r.headers["retry-after"] == "2" and r.json()["status"] == "unavailable"


def test_malformed_http_framing_is_a_400_from_the_server(api):
    """Requests h11 cannot parse never reach the API: the HTTP server answers 400 (text/plain, as docs/api.md says)."""
    url = urlsplit(api.url)
    for raw in (
        b"POST /api/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: -1\r\n\r\n{}",
        b"GET /api/jobs/a\x00b HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /api/jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    ):
        with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
            sock.sendall(raw)
            head = sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 400 "), (raw, head)


def test_a_client_that_drops_a_post_mid_body_leaves_no_traceback(api):
    url = urlsplit(api.url)
    multipart = "multipart/form-data; boundary=b"
    dropped = [("/api/jobs", "application/json"), ("/api/jobs", multipart), ("/api/bench", "application/json")]
    for path, ctype in dropped:
        with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
            head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\nContent-Length: 1000\r\n\r\n"
            sock.sendall(head.encode() + (b"--b\r\n" if ctype == multipart else b'{"model": "ti'))
    # One line each, once the API has seen each connection go: then, and only then, the log is complete.
    deadline = time.monotonic() + 60
    while api.output().count("client disconnected") < len(dropped):
        assert time.monotonic() < deadline, api.output()
        time.sleep(0.1)
    assert httpx.get(f"{api.url}/api/health", timeout=30).status_code == 200
    assert "Traceback" not in api.log.read_text(errors="replace")


def test_a_crafted_npy_header_gets_no_array_headers_and_no_error(api):
    job_id = "npy-" + os.urandom(4).hex()
    run = api.runs / job_id
    write_run(run, 2, 32)
    headers = {
        "evil.npy": b"{'descr': '<f4\\r\\nX-Injected: 1', 'fortran_order': False, 'shape': (2,)}",
        "deep.npy": b"[" * 500 + b"]" * 500,
        "junk.npy": b"{'descr': __import__('os')}",
    }
    for name, meta in headers.items():
        (run / name).write_bytes(b"\x93NUMPY\x01\x00" + len(meta).to_bytes(2, "little") + meta)
        r = httpx.get(f"{api.url}/api/jobs/{job_id}/artifacts/{name}", timeout=30)
        assert r.status_code == 200 and "x-dtype" not in r.headers and "x-injected" not in r.headers, name


def test_a_bench_summary_that_is_not_json_is_a_409_naming_it(api):
    job_id = "bench-" + os.urandom(4).hex()
    (api.runs / job_id).mkdir()
    Jobs(api.conn).create(job_id, "tiny", {"model": "tiny"}, kind="bench")
    for summary in (b'{"rate": NaN}', b"\xff\xfe", b"[" * 100_000):
        (api.runs / job_id / rf.BENCH_SUMMARY).write_bytes(summary)
        r = httpx.get(f"{api.url}/api/bench/{job_id}", timeout=30)
        assert r.status_code == 409 and "bench summary" in r.json()["detail"], (summary[:10], r.text[:200])


def test_a_manifest_replaced_while_it_is_served_is_served_whole(api):
    """The manifest is streamed from the file it opened: a writer replacing it (as every step does) cannot make the
    response announce one size and send another."""
    job_id = "streamed-" + os.urandom(4).hex()
    data = write_run(api.runs / job_id, 2, 32)
    path = api.runs / job_id / "manifest.json"
    with httpx.Client(base_url=api.url, timeout=30) as http:
        for size in (10, 5000, 10, 200_000, 10):
            data["warnings"] = ["x" * size]
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data))
            tmp.replace(path)
            for route in (f"/api/jobs/{job_id}/manifest", f"/api/jobs/{job_id}/artifacts/manifest.json"):
                assert http.get(route).json()["warnings"] == ["x" * size]
            assert http.head(f"/api/jobs/{job_id}/artifacts/manifest.json").status_code == 200
