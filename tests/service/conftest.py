"""A running service for the module: embedded Redis, workers (tiny, tiny-faulty) and the API."""

from __future__ import annotations

import pytest

from stepscope.client import Client
from tests.servers import running_service


@pytest.fixture(scope="session")
def service(tmp_path_factory):
    root = tmp_path_factory.mktemp("service")
    workers = [("tiny", None), ("tiny-faulty", None)]
    with running_service(root, root / "runs", workers, STEPSCOPE_SSE_HEARTBEAT="1") as service:
        yield service


@pytest.fixture
def client(service):
    with Client(service.url) as c:
        yield c
