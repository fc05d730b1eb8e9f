"""The README's first command brings the service up, and the README's curl example completes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from stepscope.client import Client
from stepscope.embedded_redis import free_port
from tests.servers import wait_until

REPO = Path(__file__).resolve().parents[2]


def readme_curl_spec() -> dict:
    """The JSON body of the README's first `curl ... -d '...'` submission."""
    text = (REPO / "README.md").read_text()
    body = re.search(r"curl -s -X POST http://127\.0\.0\.1:8000/api/jobs[^\n]*\n\s*-d '(.*?)'", text, re.S)
    assert body, "the README has no curl submission example"
    return json.loads(body.group(1))


def test_make_run_serves_the_readme_example(tmp_path):
    port = free_port()
    env = {**os.environ, "STEPSCOPE_STORE": str(tmp_path / "runs"), "STEPSCOPE_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("STEPSCOPE_REDIS_URL", None)  # the embedded Redis, as on a fresh machine
    venv = Path(sys.prefix)
    log = open(tmp_path / "up.log", "wb")
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "run", f"PORT={port}", f"DATA_DIR={tmp_path / 'var'}", f"VENV={venv}"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def up():
            assert proc.poll() is None, (tmp_path / "up.log").read_text()
            try:
                health = httpx.get(f"{url}/api/health", timeout=2).json()
                return health["queues"].get("stepscope:tiny", {}).get("workers") == 1
            except (httpx.HTTPError, ValueError):
                return False

        wait_until(up, 300, "make run to bring up the API and a tiny worker")
        assert f"stepscope is up: http://127.0.0.1:{port}/" in (tmp_path / "up.log").read_text()
        assert httpx.get(url).text.startswith("<!doctype html>")
        with Client(url) as client:
            job = client.submit(readme_curl_spec())
            final = client.wait(job["id"], timeout=240)
        assert final["status"] == "finished", final
        assert (tmp_path / "runs" / job["id"] / "manifest.json").exists()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        log.close()
    assert "stopped" in (tmp_path / "up.log").read_text()
