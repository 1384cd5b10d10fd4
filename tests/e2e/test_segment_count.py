"""The live segment count and adding a subscriber by hand, in a real headless Chromium against the app under uvicorn
(PostgreSQL): typing an expression shows how many recipients it matches, a mistake shows where it is, and the
nonce'd script runs under the admin's Content-Security-Policy with no violation."""

from __future__ import annotations

from playwright.sync_api import ConsoleMessage, Page, expect

from mailer.db import session_scope
from subscribers import mailing_lists, service
from subscribers.models import ConsentSource
from tests.e2e.test_admin_journeys import page, sign_in, site  # noqa: F401 (fixtures)


def test_count_updates_while_typing(site: str, page: Page) -> None:  # noqa: F811
    with session_scope() as session:
        weekly = mailing_lists.create_list(session, "weekly", "Weekly", double_opt_in=False)
        for address, city in (("a@example.org", "Berlin"), ("b@example.org", "Berlin"), ("c@example.org", "Paris")):
            outcome = service.subscribe(session, weekly, address, source=ConsentSource.ADMIN)
            assert outcome.subscription is not None
            outcome.subscription.subscriber.attributes = {"city": city}
    violations: list[str] = []

    def watch(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            violations.append(message.text)

    page.on("console", watch)
    sign_in(page, site, "staff@example.com")
    page.goto(f"{site}/admin/lists/weekly")
    count = page.locator("#segment-count")
    where = page.locator("#segment-where")
    where.press_sequentially('fields.city = "Berlin"', delay=20)
    expect(count).to_have_text("2 recipients match")
    where.press_sequentially(" and", delay=20)
    expect(count).to_contain_text("column")  # a located mistake while the expression is incomplete
    where.press_sequentially(' name is empty', delay=20)
    expect(count).to_have_text("2 recipients match")
    where.fill("")
    where.press_sequentially('fields.city = "Paris"', delay=20)
    expect(count).to_have_text("1 recipient matches")
    page.fill("#segment-name", "Parisians")
    page.click("button:has-text('Save segment')")
    expect(page.locator(".flash")).to_have_text("Segment Parisians saved")
    expect(page.locator("#segments + p + table")).to_contain_text('fields.city = "Paris"')
    assert violations == []


def test_add_a_subscriber_by_hand(site: str, page: Page) -> None:  # noqa: F811
    with session_scope() as session:
        mailing_lists.create_list(session, "weekly", "Weekly")
    sign_in(page, site, "admin@example.com")
    page.goto(f"{site}/admin/subscribers")
    page.click("a:has-text('Add a subscriber')")
    page.fill("#email", "walk.in@example.org")
    page.fill("#name", "Walk In")
    page.check("input[name=list_id]")
    page.check("input[name=mode][value=confirmed]")
    page.click("button:has-text('Add')")
    expect(page.locator(".flash")).to_contain_text("needs where they gave their consent")
    page.select_option("#origin", "event")
    page.fill("#vouched_by", "Robin at the stand")
    page.click("button:has-text('Add')")
    expect(page.locator("h1")).to_have_text("walk.in@example.org")
    expect(page.locator(".flash")).to_have_text("Added to Weekly")
    expect(page.locator("body")).to_contain_text("vouched_by: Robin at the stand")
