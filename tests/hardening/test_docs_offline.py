"""The "API docs" page works with no network: Swagger UI's and ReDoc's assets come from the
fastapi-offline wheel and are served by the API itself (issue 21 item 7)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from tests.e2e.helpers import CHROMIUM


def test_the_docs_pages_name_only_assets_the_api_serves(production):
    for page in ("/docs", "/redoc"):
        html = httpx.get(f"{production.url}{page}", timeout=30).text
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html) + re.findall(r"url: '([^']+)'", html)
        assert urls, html
        for url in urls:
            assert not urlparse(url).netloc, f"{page} loads {url} from elsewhere"
            r = httpx.get(f"{production.url}{url}", timeout=30)
            assert r.status_code == 200, (page, url)
    bundle = httpx.get(f"{production.url}/static-docs/swagger-ui-bundle.js", timeout=30)
    assert "SwaggerUIBundle" in bundle.text and len(bundle.content) > 500_000


def test_swagger_ui_renders_the_api_in_a_browser_with_the_network_cut_off(production, tmp_path):
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.fail("Debian's chromium is missing: `make browser-deps` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    blocked: list[str] = []

    def local_only(route):
        if urlparse(route.request.url).hostname == "127.0.0.1" or route.request.url.startswith("data:"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.route("**/*", local_only)
            page.goto(f"{production.url}/docs")
            page.wait_for_selector(".swagger-ui .info .title", timeout=60_000)
            assert "stepscope" in page.inner_text(".swagger-ui .info .title")
            # The operations are listed, e.g. submitting a job.
            page.wait_for_selector("#operations-jobs-submit_api_jobs_post, .opblock-tag", timeout=30_000)
            page.screenshot(path=str(tmp_path / "docs-offline.png"))
        finally:
            browser.close()
    assert not blocked, blocked
