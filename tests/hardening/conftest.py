"""A service whose parts each test may kill and restart: Redis (persistent), API, workers."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from stepscope.embedded_redis import EmbeddedRedis, free_port
from tests.hardening.sse import watch_a_job_whose_worker_is_killed
from tests.servers import Proc, service_env, start_api, start_worker, stop_all, wait_until

# The janitor's patience in a Stack, shortened so a killed worker's job fails in seconds (test_streams.py checks the
# production defaults).
LOST_AFTER = 8.0
JANITOR_EVERY = 1.0


class Stack:
    def __init__(self, root: Path, **settings: str):
        self.root = root
        self.redis = EmbeddedRedis(root / "redis", persistence=True).start()
        shortened = {
            "STEPSCOPE_SSE_HEARTBEAT": "1",
            "STEPSCOPE_LOST_AFTER": str(LOST_AFTER),
            "STEPSCOPE_JANITOR_EVERY": str(JANITOR_EVERY),
        }
        self.env = service_env(self.redis.url, str(root / "runs"), str(root / "cache"), **{**shortened, **settings})
        self.port = free_port()
        self.api: Proc | None = None
        self.workers: list[Proc] = []
        self._logs = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self, name: str) -> Path:
        self._logs += 1
        return self.root / "logs" / f"{self._logs:02d}-{name}.log"

    def start_api(self, **settings: str) -> Proc:
        """The API on the stack's port; `settings` (STEPSCOPE_*=...) override the stack's for this process."""
        self.api = start_api({**self.env, **settings}, self.log("api"), port=self.port)
        return self.api

    def start_worker(self, model: str = "tiny") -> Proc:
        worker = start_worker(self.env, self.log(f"worker-{model}"), model)
        self.workers.append(worker)
        return worker

    def worker(self, model: str = "tiny") -> Proc:
        """The live worker a test of a shared stack goes on with: the one left by the test before, or a new one."""
        alive = [w for w in self.workers if w.alive()]
        return alive[-1] if alive else self.start_worker(model)

    def restart_redis(self) -> None:
        self.redis = EmbeddedRedis(self.redis.data_dir, port=self.redis.port, persistence=True).start()

    def rss_kib(self, proc: Proc) -> int:
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def wait_healthy(self, timeout: float = 60) -> None:
        wait_until(lambda: _status(f"{self.url}/api/health") == 200, timeout, "the API to be healthy")

    def stop(self) -> None:
        for proc in [*self.workers, self.api]:
            if proc is not None:
                proc.stop()
        self.redis.stop()


def epoch(iso: str) -> float:
    """Seconds since the epoch of a record's UTC time stamp (jobs.now_iso)."""
    return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=3).status_code
    except httpx.HTTPError:
        return None


@pytest.fixture
def stack(tmp_path):
    s = Stack(tmp_path)
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="session")
def production(tmp_path_factory):
    """Embedded Redis and the API with every production default (the SSE heartbeat, the janitor's patience),
    shared by the tests that use it (one xdist process: test_docs_offline.py, test_limits.py, test_streams.py).

    It also starts, in the background, the production-timing twin of the fault tests' short janitor: a viewer
    follows a job whose worker is killed (`killed_worker_viewer`, a Future), checked by the last test of
    test_streams.py. The tests in between run while the janitor waits its 30 s.
    """
    root = tmp_path_factory.mktemp("production")
    server = EmbeddedRedis(root / "redis", persistence=False).start()
    env = service_env(server.url, str(root / "runs"), str(root / "cache"))
    where = ("STEPSCOPE_REDIS_URL", "STEPSCOPE_STORE", "STEPSCOPE_CACHE_DIR")
    for key in [k for k in env if k.startswith("STEPSCOPE_") and k not in where]:
        del env[key]  # nothing inherited may shorten a production setting
    procs: list[Proc] = []
    try:
        with ThreadPoolExecutor(1) as pool:
            api = start_api(env, root / "logs" / "api.log")
            procs.append(api)
            service = SimpleNamespace(env=env, api=api, url=api.url, procs=procs, root=root, redis_url=server.url)
            service.killed_worker_viewer = pool.submit(watch_a_job_whose_worker_is_killed, service)
            yield service
            # When test_streams.py did not run (-k, one file), the scenario ends here: within the janitor's patience.
            service.killed_worker_viewer.exception(timeout=300)
    finally:
        stop_all(procs)
        server.stop()
