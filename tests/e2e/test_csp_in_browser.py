"""The admin under its Content-Security-Policy in a real Chromium: the sandboxed srcdoc previews, the live preview
script, the progress script and the erase confirmation all still work, and the browser reports no violation."""

from __future__ import annotations

import re

from playwright.sync_api import ConsoleMessage, Dialog, Page, expect
from sqlalchemy import select

from mailer.db import session_scope
from subscribers import mailing_lists, service
from subscribers.models import ConsentSource, Subscriber
from tests.e2e.test_admin_journeys import page, sign_in, site, write_issue  # noqa: F401 (fixtures)
from tests.mailer.test_issue import EXAMPLE


def test_admin_pages_work_under_the_csp_without_violations(site: str, page: Page) -> None:  # noqa: F811
    violations: list[str] = []

    def watch(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            violations.append(message.text)

    page.on("console", watch)
    response = page.goto(f"{site}/admin/login")
    assert response is not None and "script-src" in response.headers["content-security-policy"]
    sign_in(page, site, "admin@example.com")

    write_issue(page, site, EXAMPLE.read_text())
    phone = page.frame_locator("#phone")
    expect(phone.locator("body")).to_contain_text("Chipmakers")  # the srcdoc frame renders under the policy
    expect(page.frame_locator("#desktop").locator("body")).to_contain_text("Chipmakers")
    styled = phone.locator("body").evaluate("b => getComputedStyle(b).margin")  # the email's own <style> applies
    assert styled == "0px", styled
    page.fill("#issue-source", EXAMPLE.read_text().replace("Good morning.", "Good evening, under CSP."))
    expect(phone.locator("body")).to_contain_text("Good evening, under CSP.")  # the nonce'd live-preview script

    with session_scope() as session:
        weekly = mailing_lists.create_list(session, "weekly", "Weekly")
        subscription = service.subscribe(session, weekly, "erase.me@example.org", source=ConsentSource.ADMIN,
                                         confirmed=True, consent_note="test").subscription
        assert subscription is not None
        subscriber_id = subscription.subscriber_id
    page.goto(f"{site}/admin/subscribers/{subscriber_id}")
    asked: list[str] = []

    def answer(dialog: Dialog, accept: bool) -> None:
        asked.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", lambda dialog: answer(dialog, False))
    page.check("input[name=confirm]")
    page.click("button:has-text('Erase')")
    assert asked == ["Erase this subscriber? This cannot be undone."]  # the confirmation still asks
    page.once("dialog", lambda dialog: answer(dialog, True))
    page.click("button:has-text('Erase')")
    page.wait_for_url(re.compile(r"/admin/subscribers\?flash="))
    expect(page.locator("h1")).to_have_text("Subscribers")
    with session_scope() as session:
        erased = session.scalar(select(Subscriber.erased_at).where(Subscriber.id == subscriber_id))
    assert erased is not None and len(asked) == 2

    page.goto(f"{site}/admin")  # the dashboard's progress script
    expect(page.locator("h1")).to_have_text("Dashboard")
    assert violations == []
