"""`stepscope up` keeps what it started running, shows it in /api/health, writes everything under
--data-dir, and stops everything within 10 s of SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from stepscope.embedded_redis import free_port
from tests.servers import wait_until

STOP_WITHIN = 10.0  # seconds from SIGTERM until every process of `up` has exited


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
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_up_restarts_a_killed_worker_and_redis_writes_under_its_data_dir_and_stops_within_10_s(tmp_path):
    port = free_port()
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPSCOPE_")}  # production defaults
    env.update({"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})
    log_path = tmp_path / "up.log"
    log = open(log_path, "wb")
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "stepscope.cli", "up", "--port", str(port), "--data-dir", str(data_dir)],
        cwd=cwd,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    pids: set[int] = set()
    try:

        def serving(restarts: int = 0, redis_restarts: int = 0):
            assert proc.poll() is None, log_path.read_text()
            health = _health(url)
            if not health or health["queues"].get("stepscope:tiny", {}).get("workers") != 1:
                return None
            sup = health["supervised"]
            ok = sup["worker:tiny"]["restarts"] == restarts and sup["redis"]["restarts"] == redis_restarts
            return health if ok and all(c["state"] == "running" for c in sup.values()) else None

        health = wait_until(serving, 300, "up to serve a tiny worker")
        worker_pid = health["supervised"]["worker:tiny"]["pid"]
        redis_pid = health["supervised"]["redis"]["pid"]
        pids |= {worker_pid, redis_pid}
        assert health["store"] == str(data_dir / "runs")

        # A job's run lands under the data directory, not under the working directory.
        spec = {"model": "tiny", "prompt": "under the data dir", "steps": 2, "height": 64, "width": 64}
        job = httpx.post(f"{url}/api/jobs", json=spec, timeout=30).json()
        wait_until(
            lambda: httpx.get(f"{url}/api/jobs/{job['id']}", timeout=5).json()["status"] == "finished", 240, "the job"
        )
        assert (data_dir / "runs" / job["id"] / "manifest.json").is_file()
        assert not (cwd / "runs").exists()

        os.kill(worker_pid, signal.SIGKILL)
        health = wait_until(lambda: serving(restarts=1), 300, "up to restart the killed worker")
        assert health["supervised"]["worker:tiny"]["pid"] != worker_pid
        assert health["supervised"]["worker:tiny"]["last_exit"] == -signal.SIGKILL
        pids.add(health["supervised"]["worker:tiny"]["pid"])

        os.kill(redis_pid, signal.SIGKILL)
        health = wait_until(lambda: serving(restarts=1, redis_restarts=1), 120, "up to restart the killed Redis")
        pids.add(health["supervised"]["redis"]["pid"])
        # A job submitted after both restarts still runs.
        job = httpx.post(f"{url}/api/jobs", json=spec, timeout=30).json()
        wait_until(
            lambda: httpx.get(f"{url}/api/jobs/{job['id']}", timeout=5).json()["status"] == "finished", 240, "a job"
        )
        text = log_path.read_text()
        assert f"worker:tiny (pid {worker_pid}) exited with -9; restarting in 1 s" in text
        assert f"redis (pid {redis_pid}) exited with -9; restarting in 1 s" in text

        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)  # `up` alone: it must stop its children itself
        proc.wait(timeout=STOP_WITHIN + 5)
        took = time.monotonic() - sent
        assert took < STOP_WITHIN, took
        assert not [pid for pid in pids if _alive(pid)]
        assert "stopped" in log_path.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        log.close()
