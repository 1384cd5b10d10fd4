"""The rendered email in real headless Chromium: phone width reflows without overflow, desktop shows the 600 px
column, every headline is visible. Screenshots go to docs/screenshots/ for the README."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailer.batch import Content, Recipient
from mailer.issue import load_issue
from mailer.message import personalize
from mailer.placeholders import Key
from mailer.render import render_issue
from tests.mailer.test_issue import EXAMPLE

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture(scope="module")
def email_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rendered = render_issue(load_issue(EXAMPLE))
    content = Content(subject=rendered.subject, html=rendered.html, text=rendered.text, from_email="a@example.com")
    html, _ = personalize(content, Recipient(email="r@example.com", values={
        Key.NAME: "Ada", Key.UNSUBSCRIBE_URL: "https://news.example.com/u", Key.PREFERENCES_URL: "https://p",
        Key.WEB_URL: "https://w"}))
    path = tmp_path_factory.mktemp("email") / "email.html"
    path.write_text(html)
    return path


@pytest.mark.browser
@pytest.mark.parametrize("width", [375, 1024])
def test_layout_at_width(browser, email_file: Path, width: int) -> None:
    page = browser.new_page(viewport={"width": width, "height": 900})
    try:
        page.goto(email_file.as_uri())
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"horizontal overflow of {overflow}px at {width}px"
        headlines = page.locator("h2")
        assert headlines.count() == 9  # 8 stories + Wrapping Up
        for index in range(headlines.count()):
            box = headlines.nth(index).bounding_box()
            assert headlines.nth(index).is_visible() and box is not None
            assert box["x"] >= 0 and box["x"] + box["width"] <= width
        column = page.evaluate("Math.max(...[...document.querySelectorAll('h2')].map(h => h.getBoundingClientRect()"
                               ".width))")
        if width == 1024:
            assert 500 <= column <= 600  # the 600 px column (minus padding)
        else:
            assert column <= 375
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"email-{width}.png"), full_page=True)
    finally:
        page.close()
