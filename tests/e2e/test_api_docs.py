"""The API explorer at /api/docs renders in a real browser from the app's own assets, with no request leaving the
machine and no console error (it runs under the same Content-Security-Policy as the other pages)."""

from __future__ import annotations

from playwright.sync_api import Browser, expect


def test_api_docs_render_offline_in_chromium(site: str, browser: Browser) -> None:
    page = browser.new_page()
    outside: list[str] = []
    errors: list[str] = []
    page.on("request", lambda request: outside.append(request.url) if not request.url.startswith(site) else None)
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("response", lambda response: errors.append(f"{response.status} {response.url}")
            if response.status >= 400 else None)
    page.goto(f"{site}/api/docs")
    expect(page.locator(".opblock-summary-path[data-path='/sends/{send_id}/report']")).to_be_visible(timeout=15000)
    expect(page.locator(".opblock-summary-path[data-path='/segments/count']")).to_be_visible()
    assert outside == [] and errors == []
    page.close()
