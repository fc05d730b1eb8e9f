"""A running service for the module: embedded Redis, workers (tiny, tiny-faulty) and the API."""

from __future__ import annotations

import pytest

from stepscope.client import Client
from tests.servers import EmbeddedRedis, service_env, start_api, start_worker


@pytest.fixture(scope="session")
def service(tmp_path_factory):
    root = tmp_path_factory.mktemp("service")
    server = EmbeddedRedis(root / "redis", persistence=False).start()
    env = service_env(server.url, str(root / "runs"), str(root / "cache"), STEPSCOPE_SSE_HEARTBEAT="1")
    procs = []
    try:
        procs.append(start_worker(env, root / "logs" / "worker-tiny.log", "tiny"))
        procs.append(start_worker(env, root / "logs" / "worker-faulty.log", "tiny-faulty"))
        api = start_api(env, root / "logs" / "api.log")
        procs.append(api)

        class Service:
            url = api.url
            redis_url = server.url
            store = root / "runs"
            environment = env
            logs = root / "logs"
            workers = procs[:2]

        yield Service
    finally:
        for proc in reversed(procs):
            proc.stop()
        server.stop()


@pytest.fixture
def client(service):
    with Client(service.url) as c:
        yield c
