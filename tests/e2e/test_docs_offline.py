"""Swagger UI renders the API in Chromium with every request that would leave 127.0.0.1 blocked:
its assets come from the fastapi-offline wheel, served by the API (issue 21 item 7)."""

from __future__ import annotations

from urllib.parse import urlparse

from playwright.sync_api import expect


def test_swagger_ui_renders_the_api_in_a_browser_with_the_network_cut_off(service, browser, tmp_path):
    blocked: list[str] = []

    def local_only(route):
        if urlparse(route.request.url).hostname == "127.0.0.1" or route.request.url.startswith("data:"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context = browser.new_context()
    try:
        page = context.new_page()
        page.route("**/*", local_only)
        page.goto(f"{service.url}/docs")
        page.wait_for_selector(".swagger-ui .info .title", timeout=60_000)
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("stepscope")
        # The operations are listed, e.g. submitting a job.
        page.wait_for_selector("#operations-jobs-submit_api_jobs_post, .opblock-tag", timeout=30_000)
        page.screenshot(path=str(tmp_path / "docs-offline.png"))
    finally:
        context.close()
    assert not blocked, blocked
