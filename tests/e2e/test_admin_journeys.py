"""What a newsletter team does in the admin, in a real headless Chromium against the real app under uvicorn
(PostgreSQL, Celery inline, outbox transport).

Set SAVE_ADMIN_SCREENSHOTS=1 to refresh docs/screenshots/admin-*.png from the journey.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select

from mailer.db import session_scope, utcnow
from mailer.events import DeliveryEvent, EventKind
from mailer.store import save_issue
from newsletter.auth import create_user
from newsletter.models import Role
from newsletter.web.ratelimit import reset
from subscribers import mailing_lists, service
from subscribers.models import ConsentSource, Subscriber
from tests.mailer.test_issue import EXAMPLE
from tests.support.audience import started_send
from tests.support.mailbox import messages_to, outbox_messages
from tests.support.server import serve
from worker import campaigns
from worker.events import apply_pending, store
from worker.models import Delivery
from worker.tasks import resume_send

PASSWORD = "correct horse battery staple"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
CSV = ("email,name,company\n"
       "ada@example.org,Ada Lovelace,Analytical\n"
       "grace@example.org,Grace Hopper,Navy\n"
       "alan@example.org,Alan Turing,Bletchley\n"
       "not-an-address,Broken Row,Nowhere\n"
       "ada@example.org,Ada Again,Duplicate\n")


@pytest.fixture
def site(pg_url: str) -> Iterator[str]:
    reset()
    with session_scope() as session:
        create_user(session, "admin@example.com", PASSWORD, Role.ADMIN)
        create_user(session, "staff@example.com", PASSWORD, Role.STAFF)
    with serve() as base:
        yield base


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    try:
        yield tab
    finally:
        context.close()


def sign_in(page: Page, base: str, email: str) -> None:
    page.goto(f"{base}/admin")
    expect(page).to_have_url(f"{base}/admin/login?next=/admin")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("button:has-text('Sign in')")
    expect(page.locator("h1")).to_have_text("Dashboard")


def shoot(page: Page, tmp_path: Path, name: str, *, full_page: bool = True) -> Path:
    path = tmp_path / f"admin-{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    assert path.stat().st_size > 10_000, f"{name} screenshot looks empty"
    if os.environ.get("SAVE_ADMIN_SCREENSHOTS"):
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOCS / path.name)
    return path


def write_issue(page: Page, base: str, source: str) -> str:
    page.goto(f"{base}/admin/issues")
    page.fill("#source", source)
    page.click("button:has-text('Save and preview')")
    expect(page.locator("#phone")).to_be_visible()
    return page.url


def send_to_list(page: Page, slug: str) -> None:
    page.select_option("#send-list", slug)
    page.click("form[action$='/send'] button[type=submit]")
    expect(page.locator("#send-status")).to_have_text("done")


def report_outcomes(outcomes: dict[str, EventKind]) -> None:
    """What the provider reports back (as the SendGrid webhook would store it), applied by the events worker."""

    with session_scope() as session:
        rows = session.execute(select(Delivery.id, Delivery.send_id, Subscriber.email)
                               .join(Subscriber, Subscriber.id == Delivery.subscriber_id)).all()
        events = [DeliveryEvent(provider="sendgrid", event_id=f"ev-{delivery_id}", kind=outcomes[address],
                                email=address, occurred_at=utcnow(), send_id=send_id, delivery_id=delivery_id)
                  for delivery_id, send_id, address in rows if address in outcomes]
        assert store(session, events) == len(outcomes)
    assert apply_pending() == len(outcomes)


def test_admin_creates_list_imports_writes_previews_tests_and_sends(site: str, page: Page, tmp_path: Path) -> None:
    sign_in(page, site, "admin@example.com")

    page.click("header a:has-text('Lists')")
    page.fill("#slug", "weekly")
    page.fill("#name", "Digital Digest Weekly")
    page.click("button:has-text('Create list')")
    expect(page.locator("h1")).to_have_text("Digital Digest Weekly")

    page.click("a:has-text('import CSV')")
    csv_path = tmp_path / "people.csv"
    csv_path.write_text(CSV)
    page.set_input_files("#file", str(csv_path))
    page.check("input[name=confirmed]")
    page.fill("#consent_source", "signup sheet, conference 2026")
    page.click("button:has-text('Import')")
    expect(page.locator("#import-result")).to_contain_text("3 imported, 0 skipped, 1 errors")
    bar = page.locator("#import-progress progress")
    assert bar.get_attribute("value") == bar.get_attribute("max") == str(len(CSV.encode()))
    with page.expect_download() as download:
        page.click("a:has-text('Download the report')")
    report = Path(download.value.path()).read_text()
    assert "not-an-address" in report and "line" in report.splitlines()[0]

    issue_url = write_issue(page, site, EXAMPLE.read_text())
    phone = page.frame_locator("#phone")
    expect(phone.locator("body")).to_contain_text("Chipmakers")
    width = page.locator("#phone").evaluate("f => f.getBoundingClientRect().width")
    assert width == 375
    overflow = phone.locator("html").evaluate("e => e.scrollWidth - e.clientWidth")  # the frame is sandboxed
    assert overflow <= 0, f"the phone preview scrolls sideways by {overflow}px"
    expect(page.frame_locator("#desktop").locator("body")).to_contain_text("Chipmakers")
    shoot(page, tmp_path, "issue-preview", full_page=False)

    source = EXAMPLE.read_text()
    page.evaluate("window.sameDocument = true")
    page.fill("#issue-source", source.replace("Good morning.", "Good evening, live preview."))
    expect(phone.locator("body")).to_contain_text("Good evening, live preview.")  # re-rendered while typing
    page.fill("#issue-source", source.replace("subject:", "subjekt:"))
    expect(page.locator("#live-problems")).to_contain_text("subject")
    assert page.evaluate("window.sameDocument") is True
    page.goto(issue_url)  # nothing was saved: the stored issue is unchanged
    expect(page.frame_locator("#phone").locator("body")).to_contain_text("Good morning.")

    page.click("button:has-text('Send test')")
    expect(page.locator(".flash[role=status]")).to_contain_text("Test sent to admin@example.com")
    assert len(messages_to("admin@example.com")) == 1

    page.goto(issue_url)
    send_to_list(page, "weekly")
    progress = page.locator("#send-progress")
    expect(progress).to_have_attribute("value", "3")
    assert progress.get_attribute("max") == "3"
    expect(page.locator("#count-sent")).to_have_text("3")
    report_outcomes({"ada@example.org": EventKind.DELIVERED, "grace@example.org": EventKind.DELIVERED,
                     "alan@example.org": EventKind.BOUNCE})
    page.reload()
    expect(page.locator("#figure-delivered")).to_have_text("2")
    expect(page.locator("#figure-bounced_hard")).to_have_text("1")
    shoot(page, tmp_path, "send")
    assert sorted(m["To"].addresses[0].addr_spec for m in outbox_messages()
                  if m["To"].addresses[0].addr_spec != "admin@example.com") == [
        "ada@example.org", "alan@example.org", "grace@example.org"]

    page.click("header a:has-text('Dashboard')")
    row = page.locator("tr[data-send]").first
    expect(row.locator("[data-status]")).to_have_text("done")
    expect(row.locator("[data-text]")).to_have_text("3 / 3")
    expect(page.locator(".card .stat").first).to_have_text("3")
    chart = page.locator("svg[role=img]")
    expect(chart).to_be_visible()
    expect(chart.locator("rect title").first).to_have_text("#1: delivered 66.7%")
    shoot(page, tmp_path, "dashboard")


def test_staff_cannot_open_suppressions(site: str, page: Page) -> None:
    sign_in(page, site, "staff@example.com")
    expect(page.locator("header")).not_to_contain_text("Suppressions")
    response = page.goto(f"{site}/admin/suppressions")
    assert response is not None and response.status == 403
    expect(page.locator("h1")).to_have_text("Forbidden")
    page.goto(f"{site}/admin/issues")
    expect(page.locator("h1")).to_have_text("Issues")  # staff do work on issues


def test_unsubscribed_from_admin_page_is_skipped_by_next_send(site: str, page: Page, tmp_path: Path) -> None:
    with session_scope() as session:
        weekly = mailing_lists.create_list(session, "weekly", "Weekly", double_opt_in=False)
        for address in ("keep@example.org", "leave@example.org"):
            service.subscribe(session, weekly, address, source=ConsentSource.ADMIN)
    sign_in(page, site, "admin@example.com")
    write_issue(page, site, EXAMPLE.read_text())
    send_to_list(page, "weekly")
    assert len(messages_to("leave@example.org")) == 1

    page.goto(f"{site}/admin/subscribers?q=leave")
    page.click("a:has-text('leave@example.org')")
    page.click("button:has-text('Unsubscribe')")
    expect(page.locator(".badge").first).to_have_text("unsubscribed")
    expect(page.locator("table").nth(1)).to_contain_text("unsubscribed")  # consent timeline

    second = EXAMPLE.read_text().replace("2023-09-22", "2023-09-29", 1)
    write_issue(page, site, second)
    send_to_list(page, "weekly")
    expect(page.locator("#count-sent")).to_have_text("1")
    assert len(messages_to("leave@example.org")) == 1  # nothing new for the one who left
    assert len(messages_to("keep@example.org")) == 2


def test_progress_bars_follow_a_running_send_without_reloading(site: str, page: Page) -> None:
    with session_scope() as session:
        weekly = mailing_lists.create_list(session, "weekly", "Weekly", double_opt_in=False)
        for n in range(5):
            service.subscribe(session, weekly, f"r{n}@example.org", source=ConsentSource.ADMIN)
        issue = save_issue(session, EXAMPLE.read_text(), filename=EXAMPLE.name)
        send_id = started_send(session, issue.id, weekly.id, created_by="test")
        assert campaigns.plan_send(session, send_id) == 5  # planned, nothing sent yet
    sign_in(page, site, "admin@example.com")
    sends_page = page.context.new_page()
    sends_page.goto(f"{site}/admin/sends/{send_id}")
    expect(sends_page.locator("#count-pending")).to_have_text("5")
    row = page.locator(f"tr[data-send='{send_id}']")
    expect(row.locator("[data-status]")).to_have_text("running")
    expect(row.locator("[data-text]")).to_have_text("0 / 5")
    page.evaluate("window.sameDocument = true")
    resume_send(send_id)  # the workers (inline here) get through the ledger while the page is open
    expect(row.locator("[data-status]")).to_have_text("done", timeout=10_000)
    expect(row.locator("[data-text]")).to_have_text("5 / 5")
    assert row.locator("[data-progress]").evaluate("p => p.value / p.max") == 1
    assert page.evaluate("window.sameDocument") is True  # updated by polling, not by a reload
    expect(sends_page.locator("#send-status")).to_have_text("done")  # the send's own page follows too
    expect(sends_page.locator("#count-sent")).to_have_text("5")
    expect(sends_page.locator("#count-pending")).to_have_text("0")
    expect(sends_page.locator("#send-progress-text")).to_have_text("5 / 5")
