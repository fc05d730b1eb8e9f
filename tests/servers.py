"""Real processes for service tests: embedded Redis, `stepscope worker`, `stepscope api`.

Every process listens on 127.0.0.1 only, logs to a file under the test's directory and is
stopped by the fixture that started it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import httpx
import redis

from stepscope import events
from stepscope.embedded_redis import EmbeddedRedis, free_port
from stepscope.jobs import live_workers


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


class Proc:
    """A child process with its output in a log file."""

    def __init__(self, args: list[str], env: dict, log: Path):
        self.args = args
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log_handle = open(log, "ab")
        self.process = subprocess.Popen(args, env=env, stdout=self._log_handle, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        self.signal(sig)
        self.wait_stopped(timeout)

    def signal(self, sig: int = signal.SIGTERM) -> None:
        """Send `sig` once if the process still runs (a second SIGTERM is RQ's cold shutdown: send one)."""
        if self.alive():
            self.process.send_signal(sig)

    def wait_stopped(self, timeout: float = 30) -> None:
        """Wait for the process to exit after a signal, SIGKILL it after `timeout`; close its log."""
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log_handle.close()

    def kill(self) -> None:
        self.stop(signal.SIGKILL, timeout=10)


def stop_all(procs: list[Proc], timeout: float = 30) -> None:
    """SIGTERM every process first (the API before the workers), then wait for each: they shut down side by side."""
    for proc in reversed(procs):
        proc.signal()
    for proc in reversed(procs):
        proc.wait_stopped(timeout)


def service_env(redis_url: str, store: str, cache_dir: str, **extra: str) -> dict:
    env = {
        **os.environ,
        "STEPSCOPE_REDIS_URL": redis_url,
        "STEPSCOPE_STORE": store,
        "STEPSCOPE_CACHE_DIR": cache_dir,
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    env.update({k: str(v) for k, v in extra.items()})
    return env


def wait_or_stop(proc: Proc, ready, timeout: float, what: str) -> None:
    """Wait until `ready()`; a process that never gets there is stopped before the error goes on."""
    try:
        wait_until(ready, timeout, what)
    except BaseException:
        proc.stop()
        raise


def start_worker(env: dict, log: Path, model: str = "tiny", name: str | None = None) -> Proc:
    name = name or f"test-{model}-{os.urandom(3).hex()}"
    proc = Proc([sys.executable, "-m", "stepscope.cli", "worker", "--model", model, "--name", name], env, log)
    conn = redis.Redis.from_url(env["STEPSCOPE_REDIS_URL"])

    def ready():
        if not proc.alive():
            raise RuntimeError(f"worker exited:\n{proc.output()}")
        return any(w["name"] == name for w in live_workers(conn))

    wait_or_stop(proc, ready, 120, f"worker {name} to announce itself")
    proc.name = name
    return proc


def start_api(env: dict, log: Path, port: int | None = None) -> Proc:
    port = port or free_port()
    proc = Proc([sys.executable, "-m", "stepscope.cli", "api", "--host", "127.0.0.1", "--port", str(port)], env, log)
    proc.url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {env['STEPSCOPE_TOKEN']}"} if env.get("STEPSCOPE_TOKEN") else {}

    def ready():
        if not proc.alive():
            raise RuntimeError(f"api exited:\n{proc.output()}")
        try:
            return httpx.get(f"{proc.url}/api/health", headers=headers, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_or_stop(proc, ready, 60, "the API to answer /api/health")
    return proc


@contextmanager
def api_without_worker(root: Path):
    """Redis and the API with no worker, for routes that read the store or refuse input. Yields the API's Proc with
    `redis_url`, `conn` (a client), `root` and `runs` (the store, root/var/runs) set."""
    server = EmbeddedRedis(root / "redis", persistence=False).start()
    proc = None
    try:
        env = service_env(server.url, str(root / "var" / "runs"), str(root / "cache"))
        proc = start_api(env, root / "api.log")
        proc.redis_url = server.url
        proc.conn = redis.Redis.from_url(server.url)
        proc.root = root
        proc.runs = root / "var" / "runs"
        yield proc
    finally:
        if proc is not None:
            proc.stop()
        server.stop()


@contextmanager
def running_service(root: Path, store: Path | str, workers: list[tuple[str, str | None]], **env_extra: str):
    """Embedded Redis, one `stepscope worker` per (model, name) started side by side, and the API.

    Yields a namespace with url, redis_url, store, environment, logs and workers; stops
    everything it started, also when starting failed halfway.
    """
    server = EmbeddedRedis(root / "redis", persistence=False).start()
    env = service_env(server.url, str(store), str(root / "cache"), **env_extra)
    logs = root / "logs"
    procs: list[Proc] = []
    try:
        with ThreadPoolExecutor(max(1, len(workers))) as pool:  # the workers load their models at the same time
            starting = [
                pool.submit(start_worker, env, logs / f"worker-{name or model}.log", model, name)
                for model, name in workers
            ]
        procs += [f.result() for f in starting if f.exception() is None]  # so `finally` stops them
        for future in starting:
            if future.exception() is not None:
                raise future.exception()
        api = start_api(env, logs / "api.log")
        procs.append(api)
        yield SimpleNamespace(
            url=api.url, redis_url=server.url, store=store, environment=env, logs=logs, workers=procs[:-1]
        )
    finally:
        stop_all(procs)
        server.stop()


class StreamEvents:
    """`events(job_id)` as the client has it, read straight from the job's Redis stream: a WorkerGate where no API
    runs."""

    def __init__(self, conn: redis.Redis):
        self.conn = conn

    def events(self, job_id: str, timeout: float = 120):
        """(event id, event) from the start of the job's stream until its final event."""
        after = "0-0"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = self.conn.xread({events.stream_key(job_id): after}, count=100, block=500)
            for entry_id, event in events.entries(reply):
                after = entry_id
                yield entry_id, event
                if events.is_final(event):
                    return
        raise TimeoutError(f"job {job_id}: no final event within {timeout} s")


class WorkerGate:
    """Lets the service's worker run a job only up to a chosen step: SIGSTOP freezes it there, so what a test checks
    "mid-run" is mid-run for certain, however fast the run is. `hold()` before submitting, `run_to(...)` for each stop;
    leaving the `with` block lets it go on (also on failure). A frozen worker sends no heartbeat: keep it frozen well
    within the janitor's patience (30 s by default, shortened by some test services). `client` is a stepscope Client,
    or StreamEvents where no API runs.
    """

    def __init__(self, worker, client):
        self.worker = worker
        self.pid = worker.pid
        self.client = client
        self.stream = None
        self.stopped = False

    def __enter__(self) -> WorkerGate:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
        if self.stream is not None:
            self.stream.close()

    def hold(self) -> None:
        """Freeze the worker now (a job submitted next waits in the queue)."""
        os.kill(self.pid, signal.SIGSTOP)
        self.stopped = True

    def release(self) -> None:
        """Let the worker go on (idempotent; nothing to do once a test killed it)."""
        if self.stopped and self.worker.alive():
            os.kill(self.pid, signal.SIGCONT)
        self.stopped = False

    def run_to(self, job_id: str, step: int, timeout: float = 120) -> dict:
        """Let the worker run until the job's stream shows baseline step `step` stored, then freeze it; returns that
        step's event. The denoising loop may be frozen a few steps further on (its events trail it by the storing
        thread's queue and the stream's round trip): callers leave many steps after `step`, and a job that ended
        before the freeze fails their checks rather than passing them."""

        def reached(event: dict) -> bool:
            return event["type"] == events.STEP and event["trajectory"] == "baseline" and event["index"] >= step

        return self.run_until(job_id, reached, f"step {step}", timeout)

    def run_until(self, job_id: str, reached: Callable[[dict], bool], what: str, timeout: float = 120) -> dict:
        """Let the worker run until the job's stream shows an event for which `reached(event)` is true, then freeze
        it; returns that event. Fails if the job ends first."""
        if self.stream is None:
            self.stream = self.client.events(job_id, timeout=timeout)
        self.release()
        deadline = time.monotonic() + timeout
        for _, event in self.stream:
            if reached(event):
                self.hold()
                return event
            assert not events.is_final(event), f"the job ended before {what}: {event}"
            assert time.monotonic() < deadline, f"{what} not reached within {timeout} s"
        raise AssertionError(f"the stream ended before {what}")


__all__ = [
    "EmbeddedRedis",
    "Proc",
    "running_service",
    "service_env",
    "start_api",
    "start_worker",
    "stop_all",
    "StreamEvents",
    "WorkerGate",
    "wait_until",
]
