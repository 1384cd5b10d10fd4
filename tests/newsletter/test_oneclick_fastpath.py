"""RFC 8058 one-click unsubscribes answered before routing (newsletter/web/oneclick.py), and what it must not take:
the page's own button, multipart one-clicks, forged and replayed links, bodies too large or cut short."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from mailer.db import session_scope
from newsletter.web.app import create_app
from subscribers import mailing_lists, service
from subscribers.models import ConsentEvent, ConsentKind, ConsentSource, Subscription, SubscriptionStatus
from subscribers.tokens import Purpose, link
from tests.support.rawhttp import chunked, post_raw
from tests.support.server import serve

ONE_CLICK = {"Content-Type": "application/x-www-form-urlencoded"}


def reader(email: str = "reader@example.com") -> tuple[int, str]:
    with session_scope() as session:
        weekly = mailing_lists.create_list(session, "weekly", "Weekly")
        outcome = service.subscribe(session, weekly, email, source=ConsentSource.ADMIN, confirmed=True,
                                    consent_note="test")
        assert outcome.subscription is not None
        subscriber_id = outcome.subscription.subscriber_id
        return subscriber_id, link(Purpose.UNSUBSCRIBE, subscriber_id, weekly.id).removeprefix("http://testserver")


def status_of(subscriber_id: int) -> SubscriptionStatus | None:
    with session_scope() as session:
        return session.scalar(select(Subscription.status).where(Subscription.subscriber_id == subscriber_id))


def leavings(subscriber_id: int) -> list[dict[str, str]]:
    with session_scope() as session:
        return [event.detail for event in session.scalars(select(ConsentEvent).where(
            ConsentEvent.subscriber_id == subscriber_id, ConsentEvent.kind == ConsentKind.UNSUBSCRIBED))]


@pytest.fixture
def client(db_url: str) -> TestClient:
    return TestClient(create_app())


def test_one_click_answers_plain_text_with_the_security_headers_and_no_cookie(client: TestClient) -> None:
    subscriber_id, path = reader()
    answer = client.post(path, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
    assert (answer.status_code, answer.text) == (200, "Unsubscribed.")
    assert answer.headers["content-type"].startswith("text/plain")
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert answer.headers["x-content-type-options"] == "nosniff" and answer.headers["x-frame-options"] == "DENY"
    assert "set-cookie" not in answer.headers  # a mail provider keeps no cookie of ours
    assert status_of(subscriber_id) is SubscriptionStatus.UNSUBSCRIBED
    assert leavings(subscriber_id) == [{"method": "one-click", "scope": "list"}]


def test_replayed_one_clicks_change_nothing_more(client: TestClient) -> None:
    subscriber_id, path = reader()
    for _ in range(5):
        answer = client.post(path, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
        assert (answer.status_code, answer.text) == (200, "Unsubscribed.")
    assert len(leavings(subscriber_id)) == 1


def test_forged_and_cut_links_change_nothing(client: TestClient) -> None:
    subscriber_id, path = reader()
    token = path.removeprefix("/unsubscribe/")
    for forged in (token[:-2] + ("AA" if not token.endswith("AA") else "BB"), token[: len(token) // 2], "x" * 500,
                   "%00", ""):
        answer = client.post(f"/unsubscribe/{forged}", content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
        assert answer.status_code in (400, 404, 405), (forged, answer.status_code)
        assert "Traceback" not in answer.text
    assert status_of(subscriber_id) is SubscriptionStatus.CONFIRMED and leavings(subscriber_id) == []


def test_the_pages_own_button_still_gets_its_page(client: TestClient) -> None:
    subscriber_id, path = reader()
    answer = client.post(path, data={"scope": "all"})
    assert answer.status_code == 200 and "text/html" in answer.headers["content-type"]
    assert "unsubscribed" in answer.text.lower()
    assert leavings(subscriber_id) == [{"method": "page", "scope": "all"}]


def test_a_multipart_one_click_goes_to_the_app_and_works_the_same(client: TestClient) -> None:
    subscriber_id, path = reader()
    answer = client.post(path, files={"List-Unsubscribe": (None, "One-Click")})
    assert (answer.status_code, answer.text) == (200, "Unsubscribed.")
    assert leavings(subscriber_id) == [{"method": "one-click", "scope": "list"}]


def test_a_body_too_large_is_refused_unread(client: TestClient) -> None:
    subscriber_id, path = reader()
    answer = client.post(path, content=b"List-Unsubscribe=One-Click&pad=" + b"x" * 2_000_000, headers=ONE_CLICK)
    assert answer.status_code == 413
    assert status_of(subscriber_id) is SubscriptionStatus.CONFIRMED


@pytest.fixture
def server(sqlite_url: str) -> Iterator[str]:
    with serve() as base:
        yield base


def test_a_chunked_body_past_the_limit_is_cut_off(server: str) -> None:
    subscriber_id, path = reader()
    response, sent = post_raw(server, path, {**ONE_CLICK, "Transfer-Encoding": "chunked"}, chunked(20 << 20))
    assert response.status == 413, response.data[:200]
    assert sent < 20 << 20
    assert status_of(subscriber_id) is SubscriptionStatus.CONFIRMED


def test_one_click_over_a_real_socket(server: str) -> None:
    subscriber_id, path = reader()
    body = b"List-Unsubscribe=One-Click"
    response, _ = post_raw(server, path, {**ONE_CLICK, "Content-Length": str(len(body))}, iter([body]), timeout=10)
    assert response.status == 200 and response.data.endswith(b"Unsubscribed.")
    assert status_of(subscriber_id) is SubscriptionStatus.UNSUBSCRIBED
