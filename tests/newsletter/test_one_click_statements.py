"""The RFC 8058 one-click unsubscribe in as few statements as its rules allow, and an erased person's old link
still changes nothing (the check moved from a read of the person into the subscriptions' query)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event, func, select

from mailer.db import get_engine, session_scope
from newsletter.web.app import create_app
from subscribers import mailing_lists, privacy, service
from subscribers.models import ConsentEvent, ConsentSource, Subscription, SubscriptionStatus
from subscribers.tokens import Purpose, link


def _reader() -> tuple[int, str]:
    with session_scope() as session:
        weekly = mailing_lists.create_list(session, "weekly", "Weekly")
        outcome = service.subscribe(session, weekly, "reader@example.com", source=ConsentSource.ADMIN,
                                    confirmed=True, consent_note="test")
        assert outcome.subscription is not None
        subscriber_id = outcome.subscription.subscriber_id
        return subscriber_id, link(Purpose.UNSUBSCRIBE, subscriber_id, weekly.id).removeprefix("http://testserver")


def _one_click(path: str) -> tuple[int, str]:
    answer = TestClient(create_app()).post(path, content=b"List-Unsubscribe=One-Click",
                                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    return answer.status_code, answer.text


def _events() -> int:
    with session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(ConsentEvent)) or 0)


def test_one_click_reads_no_person_before_their_subscriptions(pg_url: str) -> None:
    _subscriber_id, path = _reader()
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement.split()[0].upper() + " " + statement.split("FROM", 1)[-1].split()[0])

    event.listen(get_engine(), "before_cursor_execute", record)
    try:
        assert _one_click(path) == (200, "Unsubscribed.")
    finally:
        event.remove(get_engine(), "before_cursor_execute", record)
    # The update (which checks the person in its own WHERE) and the in-flight check; the consent record is a COPY
    # of the driver's own, which this hook does not see (checked below).
    assert statements == ["UPDATE subscribers", "SELECT deliveries"], statements
    with session_scope() as session:
        assert session.scalar(select(Subscription.status)) is SubscriptionStatus.UNSUBSCRIBED
    assert _events() == 3  # requested and confirmed by _reader, unsubscribed now


def test_an_erased_persons_link_changes_nothing(pg_url: str) -> None:
    subscriber_id, path = _reader()
    with session_scope() as session:
        privacy.erase(session, subscriber_id, source=ConsentSource.ADMIN)
    with session_scope() as session:  # as if something had put them back on the list since
        subscription = session.scalar(select(Subscription))
        assert subscription is not None
        subscription.status = SubscriptionStatus.CONFIRMED
    before = _events()
    assert _one_click(path) == (200, "Unsubscribed.")
    assert _events() == before
    with session_scope() as session:
        assert session.scalar(select(Subscription.status)) is SubscriptionStatus.CONFIRMED
