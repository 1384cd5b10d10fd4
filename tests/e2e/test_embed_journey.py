"""The admin's embed snippets on a page of ANOTHER site, in headless Chromium, against the real server.

The publisher's page is served by a second HTTP server on `localhost` (another site than the app's `127.0.0.1`:
no cookie of ours goes with its posts, as on the open web). Also: the same address posted 100 times at once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from mailer.db import session_scope
from mailer.settings import reset_settings
from newsletter.web.embed import snippets
from subscribers import mailing_lists
from subscribers.models import ConsentEvent, ConsentKind, Subscriber, Subscription, SubscriptionStatus
from tests.support.mailbox import links, messages_to

pytestmark = pytest.mark.browser


@contextmanager
def publisher_site(tmp_path: Path, html: str) -> Iterator[str]:
    """The publisher's own web server: one static page holding the pasted snippet."""
    root = tmp_path / "blog"
    root.mkdir()
    (root / "index.html").write_text(f"<!doctype html><html><head><title>My blog</title></head><body>"
                                     f"<h1>My blog</h1>{html}</body></html>")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _snippet(kind: str) -> str:
    with session_scope() as session:
        return snippets(mailing_lists.get_list(session, "weekly"))[kind]


def _status(email: str) -> SubscriptionStatus | None:
    with session_scope() as session:
        return session.scalar(select(Subscription.status).join(Subscription.subscriber)
                              .where(Subscriber.email == email))


def test_plain_snippet_from_another_site_subscribes(site: str, browser, tmp_path: Path) -> None:
    with session_scope() as session:
        mailing_lists.create_list(session, "weekly", "Digital Digest Weekly")
    with publisher_site(tmp_path, _snippet("form")) as blog:
        context = browser.new_context()  # a fresh profile: never visited our site, no cookie of ours
        page = context.new_page()
        try:
            answers = []
            for _ in range(2):
                page.goto(blog)
                page.get_by_label("Email").fill("ada@example.com")
                page.get_by_role("button", name="Subscribe to Digital Digest Weekly").click()
                page.get_by_role("heading", name="Check your inbox").wait_for()
                assert page.url.startswith(f"{site}/lists/weekly/embed")  # our friendly page, on our domain
                answers.append(page.locator("main").inner_text())
            assert answers[0] == answers[1]  # the second submit looks the same (no enumeration)
        finally:
            context.close()
    assert _status("ada@example.com") is SubscriptionStatus.PENDING
    [confirmation] = messages_to("ada@example.com")  # one email: the repeat within minutes sends no second
    [confirm_url] = links(confirmation, "/confirm/")
    assert confirm_url.startswith(site)


def test_script_snippet_from_an_allowed_site_stays_on_the_page(site: str, browser, tmp_path: Path) -> None:
    with session_scope() as session:
        mailing_lists.create_list(session, "weekly", "Digital Digest Weekly")
    with publisher_site(tmp_path, _snippet("script")) as blog:
        with session_scope() as session:
            mailing_lists.configure_signup(mailing_lists.get_list(session, "weekly"), origins=[blog])
        context = browser.new_context()
        page = context.new_page()
        try:
            page.goto(blog)
            page.get_by_label("Email").fill("grace@example.com")
            page.get_by_role("button", name="Subscribe to Digital Digest Weekly").click()
            status = page.get_by_role("status")
            status.filter(has_text="Check your inbox").wait_for()
            assert page.url.rstrip("/") == blog  # the visitor never left the publisher's page
            first = status.inner_text()
            page.evaluate("document.querySelector('[role=status]').textContent = ''")
            page.get_by_label("Email").fill("grace@example.com")
            page.get_by_role("button", name="Subscribe to Digital Digest Weekly").click()
            status.filter(has_text="Check your inbox").wait_for()
            assert status.inner_text() == first
        finally:
            context.close()
    assert _status("grace@example.com") is SubscriptionStatus.PENDING
    assert len(messages_to("grace@example.com")) == 1


def test_script_snippet_on_a_site_not_allowed_falls_back_to_our_page(site: str, browser, tmp_path: Path) -> None:
    """CORS hides the answer from a page that may not embed the list; the snippet then posts the plain form, and the
    visitor lands on our page that says where to sign up, never on a bare error."""
    with session_scope() as session:
        mailing_lists.create_list(session, "weekly", "Digital Digest Weekly")
        mailing_lists.configure_signup(mailing_lists.get_list(session, "weekly"), origins=["https://the-real-blog.example"])
    with publisher_site(tmp_path, _snippet("script")) as blog:
        context = browser.new_context()
        page = context.new_page()
        try:
            page.goto(blog)
            page.get_by_label("Email").fill("mallory@example.com")
            page.get_by_role("button", name="Subscribe to Digital Digest Weekly").click()
            page.get_by_role("heading", name="Sign up to Digital Digest Weekly here").wait_for()
        finally:
            context.close()
    assert _status("mallory@example.com") is None and messages_to("mallory@example.com") == []


def test_same_address_posted_100_times_at_once(site: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing lost, nothing doubled: one subscriber, one subscription, one request in the consent trail, one email,
    and every one of the 100 answers the same page. Rate limits raised so that all 100 reach the database."""
    monkeypatch.setenv("NEWSLETTER_SUBSCRIBE_RATE_PER_IP", "1000")
    monkeypatch.setenv("NEWSLETTER_SUBSCRIBE_RATE_PER_EMAIL", "1000")
    reset_settings()
    with session_scope() as session:
        mailing_lists.create_list(session, "weekly", "Digital Digest Weekly")
    barrier = threading.Barrier(100)

    def post(_i: int) -> tuple[int, str]:
        with httpx.Client(timeout=60) as client:
            barrier.wait()
            response = client.post(f"{site}/lists/weekly/embed", data={"email": "crowd@example.com"},
                                   headers={"Origin": "http://localhost:9"})
            return response.status_code, response.text

    with ThreadPoolExecutor(max_workers=100) as pool:
        answers = list(pool.map(post, range(100)))
    assert {code for code, _ in answers} == {200}
    assert len({text for _, text in answers}) == 1
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 1
        assert session.scalar(select(func.count()).select_from(Subscription)) == 1
        requested = session.scalar(select(func.count()).select_from(ConsentEvent)
                                   .where(ConsentEvent.kind == ConsentKind.REQUESTED))
    assert requested == 1
    assert len(messages_to("crowd@example.com")) == 1
