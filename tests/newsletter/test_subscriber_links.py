"""Subscribers' links against hostile and old input: a years-old unsubscribe link, a forged preferences form."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from mailer.db import session_scope
from newsletter.auth import create_user
from newsletter.models import Role
from subscribers import mailing_lists, service, tokens
from subscribers.models import ConsentSource, Subscription, SubscriptionStatus
from subscribers.tokens import Purpose, TokenError, link, make_token, read_token
from tests.newsletter.test_access import PASSWORD as ADMIN_PASSWORD
from tests.newsletter.test_access import sign_in
from tests.newsletter.test_public import client, csrf, status_of, subscribe  # noqa: F401 (client is a fixture)
from tests.support.mailbox import links, messages_to

FOUR_HUNDRED_DAYS = 400 * 86400


def _signed_days_ago(monkeypatch: pytest.MonkeyPatch, purpose: Purpose, subscriber_id: int,
                     list_id: int | None) -> str:
    then = time.time() - FOUR_HUNDRED_DAYS
    with monkeypatch.context() as patch:
        patch.setattr(tokens.time, "time", lambda: then)
        return link(purpose, subscriber_id, list_id).removeprefix("http://testserver")


def _confirmed(slug: str, email: str) -> tuple[int, int]:
    with session_scope() as session:
        mailing_list = mailing_lists.get_list(session, slug)
        sub = service.subscribe(session, mailing_list, email, source=ConsentSource.ADMIN, confirmed=True,
                                consent_note="test").subscription
        assert sub is not None
        return sub.subscriber_id, mailing_list.id


def test_a_400_day_old_one_click_unsubscribe_still_works(client: TestClient,  # noqa: F811
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    subscriber_id, list_id = _confirmed("weekly", "archivist@example.com")
    path = _signed_days_ago(monkeypatch, Purpose.UNSUBSCRIBE, subscriber_id, list_id)
    mail_client = TestClient(client.app)  # no cookies: what a mailbox provider sends
    response = mail_client.post(path, content=b"List-Unsubscribe=One-Click",
                                headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200 and response.text == "Unsubscribed."
    assert status_of("archivist@example.com") is SubscriptionStatus.UNSUBSCRIBED
    assert client.get(path).status_code == 200  # the page behind the link, too


def test_a_400_day_old_preferences_link_opens(client: TestClient,  # noqa: F811
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    subscriber_id, _ = _confirmed("weekly", "keeper@example.com")
    path = _signed_days_ago(monkeypatch, Purpose.PREFERENCES, subscriber_id, None)
    page = client.get(path)
    assert page.status_code == 200 and "keeper@example.com" in page.text


def test_confirmation_links_still_expire(monkeypatch: pytest.MonkeyPatch, settings) -> None:
    then = time.time() - (settings.confirm_token_max_age_days + 1) * 86400
    with monkeypatch.context() as patch:
        patch.setattr(tokens.time, "time", lambda: then)
        token = make_token(Purpose.CONFIRM, 1, 2)
    with pytest.raises(TokenError) as caught:
        read_token(Purpose.CONFIRM, token)
    assert caught.value.expired and caught.value.list_id == 2


def _subscriptions_of(subscriber_id: int) -> int:
    with session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(Subscription)
                                  .where(Subscription.subscriber_id == subscriber_id)) or 0)


def test_preferences_resubscribe_only_to_a_list_the_person_had(client: TestClient) -> None:  # noqa: F811
    subscriber_id, weekly_id = _confirmed("weekly", "chooser@example.com")
    with session_scope() as session:
        offers_id = mailing_lists.get_list(session, "offers").id
        service.unsubscribe(session, subscriber_id, weekly_id, source=ConsentSource.ADMIN)
    path = link(Purpose.PREFERENCES, subscriber_id).removeprefix("http://testserver")
    token = csrf(client, path)
    never_joined = client.post(path, data={"csrf_token": token, "action": "resubscribe", "list_id": str(offers_id)})
    assert never_joined.status_code == 404
    assert status_of("chooser@example.com", "offers") is None and _subscriptions_of(subscriber_id) == 1
    unknown = client.post(path, data={"csrf_token": token, "action": "resubscribe", "list_id": "987654"})
    assert unknown.status_code == 404
    garbage = client.post(path, data={"csrf_token": token, "action": "resubscribe", "list_id": "x' OR 1=1"})
    assert garbage.status_code == 404
    had = client.post(path, data={"csrf_token": token, "action": "resubscribe", "list_id": str(weekly_id)})
    assert had.status_code == 200 and status_of("chooser@example.com") is SubscriptionStatus.CONFIRMED


PITCH = "URGENT your account is locked, sign in at https://evil.example/login to keep it"


def test_the_confirmation_email_carries_nothing_typed_into_the_public_form(client: TestClient) -> None:  # noqa: F811
    assert subscribe(client, "victim@example.com", PITCH).status_code == 200
    [message] = messages_to("victim@example.com")
    raw = message.as_string()
    for part in message.walk():
        if part.get_content_maintype() == "text":
            raw += str(part.get_content())
    assert "evil.example" not in raw and "URGENT" not in raw
    assert links(message, "/confirm/")  # it is still a working confirmation email


def test_the_admin_cannot_resubscribe_someone_to_a_list_they_never_had(client: TestClient) -> None:  # noqa: F811
    subscriber_id, _ = _confirmed("weekly", "kept@example.com")
    with session_scope() as session:
        create_user(session, "admin@example.com", ADMIN_PASSWORD, Role.ADMIN)
        offers_id = mailing_lists.get_list(session, "offers").id
    sign_in(client, "admin@example.com")
    token = csrf(client, f"/admin/subscribers/{subscriber_id}")
    response = client.post(f"/admin/subscribers/{subscriber_id}/action",
                           data={"csrf_token": token, "action": "resubscribe", "list_id": str(offers_id)})
    assert response.status_code == 200 and "never subscribed" in response.text
    assert status_of("kept@example.com", "offers") is None and _subscriptions_of(subscriber_id) == 1
