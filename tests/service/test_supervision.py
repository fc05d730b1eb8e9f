"""The README's first command, `make run` (`stepscope up`), with production defaults: it brings the service up and
the README's curl example completes; `up` keeps what it started running, shows it in /api/health, writes
everything under --data-dir, and stops everything within 10 s of SIGTERM.

One `make run` is shared by the module's tests (each `up` costs a worker's torch import); a test that finds it
stopped starts another, so the tests pass alone and in any order.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from stepscope.client import Client
from stepscope.embedded_redis import free_port
from tests.servers import wait_until

REPO = Path(__file__).resolve().parents[2]
STOP_WITHIN = 10.0  # seconds from SIGTERM until every process of `up` has exited


def readme_curl_spec() -> dict:
    """The JSON body of the README's first `curl ... -d '...'` submission."""
    text = (REPO / "README.md").read_text()
    body = re.search(r"curl -s -X POST http://127\.0\.0\.1:8000/api/jobs[^\n]*\n\s*-d '(.*?)'", text, re.S)
    assert body, "the README has no curl submission example"
    return json.loads(body.group(1))


def _health(url: str) -> dict | None:
    try:
        r = httpx.get(f"{url}/api/health", timeout=3)
        return r.json() if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by `up`) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _up_pid(make_pid: int) -> int:
    """The `stepscope up` process that `make run` started (its child, or a shell's child)."""
    todo = [make_pid]
    while todo:
        pid = todo.pop()
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
                if b"up" in argv and any(a.endswith(b"/stepscope") for a in argv):
                    return int(child)
                todo.append(int(child))
    raise AssertionError(f"no `stepscope up` under make (pid {make_pid})")


def _start_make_run(root: Path) -> SimpleNamespace:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPSCOPE_")}  # production defaults
    env.update({"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})
    log_path = root / "up.log"
    log = open(log_path, "wb")
    data_dir = root / "data"
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "run", f"PORT={port}", f"DATA_DIR={data_dir}", f"VENV={sys.prefix}"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return SimpleNamespace(proc=proc, log=log, log_path=log_path, data_dir=data_dir, url=f"http://127.0.0.1:{port}")


def _stop(up: SimpleNamespace, pids: set[int]) -> None:
    """Clean-up only (the tests check the stop itself): whatever is still running is killed."""
    if up.proc.poll() is None:
        os.killpg(up.proc.pid, signal.SIGKILL)
        up.proc.wait()
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    up.log.close()


def _serving(up: SimpleNamespace, restarts: int = 0, redis_restarts: int = 0) -> dict | None:
    """/api/health once a tiny worker serves and every supervised process runs with the given restart counts."""
    assert up.proc.poll() is None, up.log_path.read_text()
    health = _health(up.url)
    if not health or health["queues"].get("stepscope:tiny", {}).get("workers") != 1:
        return None
    sup = health["supervised"]
    ok = sup["worker:tiny"]["restarts"] == restarts and sup["redis"]["restarts"] == redis_restarts
    return health if ok and all(c["state"] == "running" for c in sup.values()) else None


@pytest.fixture(scope="module")
def make_run(tmp_path_factory):
    """`make run` serving a tiny worker: the running one, or a new one if a test stopped it."""
    started: list[tuple[SimpleNamespace, set[int]]] = []

    def running() -> SimpleNamespace:
        if not started or started[-1][0].proc.poll() is not None:
            up = _start_make_run(tmp_path_factory.mktemp("make-run"))
            started.append((up, set()))
            health = wait_until(lambda: _serving(up), 300, "make run to bring up the API and a tiny worker")
            up.pid = _up_pid(up.proc.pid)
            up.pids = started[-1][1]  # every process it started, killed at the end if still alive
            up.pids |= {up.pid, health["supervised"]["worker:tiny"]["pid"], health["supervised"]["redis"]["pid"]}
        return started[-1][0]

    try:
        yield running
    finally:
        for up, pids in started:
            _stop(up, pids)


def test_make_run_serves_the_readme_example(make_run):
    up = make_run()
    assert f"stepscope is up: {up.url}/" in up.log_path.read_text()
    assert httpx.get(up.url).text.startswith("<!doctype html>")
    with Client(up.url) as client:
        job = client.submit(readme_curl_spec())
        final = client.wait(job["id"], timeout=240)
    assert final["status"] == "finished", final
    # The run lands under the data directory, not under the working directory.
    assert (up.data_dir / "runs" / job["id"] / "manifest.json").exists()
    assert not (REPO / "runs" / job["id"]).exists()


def test_up_restarts_a_killed_worker_and_redis_writes_under_its_data_dir_and_stops_within_10_s(make_run):
    up = make_run()
    health = wait_until(lambda: _serving(up), 60, "up to serve a tiny worker with nothing restarted")
    worker_pid = health["supervised"]["worker:tiny"]["pid"]
    redis_pid = health["supervised"]["redis"]["pid"]
    assert health["store"] == str(up.data_dir / "runs")

    # A job's run lands under the data directory, not under the working directory.
    spec = {"model": "tiny", "prompt": "under the data dir", "steps": 2, "height": 64, "width": 64}
    job = httpx.post(f"{up.url}/api/jobs", json=spec, timeout=30).json()
    wait_until(
        lambda: httpx.get(f"{up.url}/api/jobs/{job['id']}", timeout=5).json()["status"] == "finished", 240, "the job"
    )
    assert (up.data_dir / "runs" / job["id"] / "manifest.json").is_file()
    assert not (REPO / "runs" / job["id"]).exists()

    os.kill(worker_pid, signal.SIGKILL)
    health = wait_until(lambda: _serving(up, restarts=1), 300, "up to restart the killed worker")
    assert health["supervised"]["worker:tiny"]["pid"] != worker_pid
    assert health["supervised"]["worker:tiny"]["last_exit"] == -signal.SIGKILL
    up.pids.add(health["supervised"]["worker:tiny"]["pid"])

    os.kill(redis_pid, signal.SIGKILL)
    health = wait_until(lambda: _serving(up, restarts=1, redis_restarts=1), 120, "up to restart the killed Redis")
    up.pids.add(health["supervised"]["redis"]["pid"])
    # A job submitted after both restarts still runs.
    job = httpx.post(f"{up.url}/api/jobs", json=spec, timeout=30).json()
    wait_until(
        lambda: httpx.get(f"{up.url}/api/jobs/{job['id']}", timeout=5).json()["status"] == "finished", 240, "a job"
    )
    text = up.log_path.read_text()
    assert f"worker:tiny (pid {worker_pid}) exited with -9; restarting in 1 s" in text
    assert f"redis (pid {redis_pid}) exited with -9; restarting in 1 s" in text

    sent = time.monotonic()
    os.kill(up.pid, signal.SIGTERM)  # `up` alone: it must stop its children itself
    wait_until(lambda: not _alive(up.pid), STOP_WITHIN + 5, "up to exit after SIGTERM")
    took = time.monotonic() - sent
    assert took < STOP_WITHIN, took
    assert not [pid for pid in up.pids if _alive(pid)]
    assert "stopped" in up.log_path.read_text()
