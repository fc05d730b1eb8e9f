"""Swagger UI renders the API in Chromium with every request that would leave 127.0.0.1 blocked:
its assets come from the fastapi-offline wheel, served by the API (issue 21 item 7)."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.e2e.helpers import offline_page


def test_swagger_ui_renders_the_api_in_a_browser_with_the_network_cut_off(service, browser, tmp_path):
    with offline_page(browser) as (page, blocked):
        page.goto(f"{service.url}/docs")
        page.wait_for_selector(".swagger-ui .info .title", timeout=60_000)
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("stepscope")
        # The operations are listed, e.g. submitting a job.
        page.wait_for_selector("#operations-jobs-submit_api_jobs_post, .opblock-tag", timeout=30_000)
        page.screenshot(path=str(tmp_path / "docs-offline.png"))
    assert not blocked, blocked
