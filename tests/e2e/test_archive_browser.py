"""A German list's archive in headless Chromium: the index, an issue and the way back read German, the page says
its language, and the issue's own line of links leads to the list's pages."""

from __future__ import annotations

import pytest

from mailer.db import session_scope
from mailer.store import save_issue
from subscribers import mailing_lists
from tests.support.audience import EXAMPLE, started_send
from worker import campaigns

pytestmark = pytest.mark.browser


def test_a_german_lists_archive_in_the_browser(site: str, browser) -> None:
    with session_scope() as session:
        woche = mailing_lists.create_list(session, "woche", "Die Woche",
                                          look=mailing_lists.ListLook(language="de", accent_colour="#0f766e"))
        issue = save_issue(session, EXAMPLE.read_text(), filename=str(EXAMPLE))
        send_id = started_send(session, issue.id, woche.id)
    with session_scope() as session:
        campaigns.plan_send(session, send_id)
    page = browser.new_page()
    try:
        page.goto(f"{site}/archive")
        page.get_by_role("link", name="All issues of Die Woche").click()
        page.get_by_role("heading", name="Frühere Ausgaben von Die Woche").wait_for()
        assert page.locator("html").get_attribute("lang") == "de"
        assert page.get_by_text("Erschienen am").count() == 1
        page.get_by_role("link", name="Digital Digest Weekly: chips get greener").click()
        page.get_by_role("link", name="Bisherige Ausgaben von Die Woche").wait_for()
        assert page.locator("html").get_attribute("lang") == "de"
        assert page.get_by_text("weil Sie Die Woche abonniert haben").count() == 1
        page.get_by_role("link", name="Abonnieren").click()
        page.wait_for_url(f"{site}/lists/woche/subscribe")
        assert page.locator("html").get_attribute("lang") == "de"
    finally:
        page.close()
