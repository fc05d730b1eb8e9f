"""The "API docs" page works with no network: Swagger UI's and ReDoc's assets come from the
fastapi-offline wheel and are served by the API itself (issue 21 item 7). The page rendered in
Chromium with the network cut off is tests/e2e/test_docs_offline.py (one Playwright per session)."""

from __future__ import annotations

import re
from urllib.parse import urlparse

import httpx


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
