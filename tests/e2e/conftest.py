"""The explorer against a real service: embedded Redis, a tiny-model worker, the API (serving the
frontend) on 127.0.0.1, and Debian's Chromium driven by Playwright. Nothing leaves 127.0.0.1."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest
from playwright.sync_api import expect

from stepscope.client import Client
from tests.e2e.helpers import CHROMIUM, RUN_SPEC, VIEWPORT
from tests.servers import running_service

# Playwright's auto-waiting assertions wait as long as the pages' own waits do (expect's default is 5 s).
PATIENCE_MS = 20_000
expect.set_options(timeout=PATIENCE_MS)


@pytest.fixture(scope="session")
def service(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    with running_service(root, root / "runs", [("tiny", None)], STEPSCOPE_SSE_HEARTBEAT="1") as service:
        yield service


@pytest.fixture(scope="session")
def client(service):
    with Client(service.url) as c:
        yield c


@pytest.fixture(scope="session")
def finished_run(client):
    """A finished job of RUN_SPEC: its id and manifest."""
    job = client.submit(RUN_SPEC)
    record = client.wait(job["id"], timeout=120)
    assert record["status"] == "finished", record

    class Run:
        id = job["id"]
        manifest = client.manifest(job["id"])

    return Run


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.fail("Debian's chromium is missing: `make browser-deps` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        yield browser
        browser.close()


class PageErrors(list):
    """Uncaught exceptions and console errors of the page, checked at the end of each test."""


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport=VIEWPORT)

    def local_only(route):
        # Only the service under test: anything else would be a request leaving the machine.
        host = urlparse(route.request.url).hostname
        if host == "127.0.0.1" or route.request.url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            route.abort()

    context.route("**/*", local_only)
    page = context.new_page()
    page.set_default_timeout(PATIENCE_MS)
    errors = PageErrors()
    page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    page.on("console", lambda msg: msg.type == "error" and errors.append(f"console: {msg.text}"))
    page.errors = errors
    yield page
    context.close()
    # An expected HTTP error (a 422 the test provoked) logs a console line; page exceptions never pass.
    uncaught = [e for e in errors if e.startswith("uncaught")]
    assert not uncaught, uncaught
