"""The subscriber's pages over real HTTP semantics (Starlette's test client on the real app, real database)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from mailer.db import session_scope, utcnow
from newsletter.web import ratelimit
from newsletter.web.app import create_app
from newsletter.web.ratelimit import RateLimiter, reset
from subscribers import mailing_lists, service
from subscribers.models import ConsentEvent, ConsentKind, ConsentSource, Subscription, SubscriptionStatus
from subscribers.models import SuppressionReason as Reason
from subscribers.tokens import Purpose, link, make_token
from tests.support.mailbox import links, messages_to, outbox_messages
from worker.subscriber_tasks import purge_pending


@pytest.fixture
def client(db_url: str) -> TestClient:
    reset()
    with session_scope() as session:
        mailing_lists.create_list(session, "weekly", "Digital Digest Weekly")
        mailing_lists.create_list(session, "offers", "Offers", double_opt_in=False)
    return TestClient(create_app(), base_url="http://testserver")


def csrf(client: TestClient, path: str) -> str:
    page = client.get(path)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, page.text
    return match.group(1)


def subscribe(client: TestClient, email: str, name: str = "", **extra: str):
    token = csrf(client, "/lists/weekly/subscribe")
    return client.post("/lists/weekly/subscribe", data={"email": email, "name": name, "csrf_token": token, **extra})


def status_of(email: str, slug: str = "weekly") -> SubscriptionStatus | None:
    with session_scope() as session:
        subscriber = session.scalar(select(service.Subscriber).where(service.Subscriber.email == email))
        if subscriber is None:
            return None
        mailing_list = mailing_lists.get_list(session, slug)
        sub = session.scalar(select(Subscription).where(Subscription.subscriber_id == subscriber.id,
                                                        Subscription.list_id == mailing_list.id))
        return sub.status if sub else None


def test_double_opt_in_round_trip(client: TestClient) -> None:
    response = subscribe(client, "Ann.Reader@Example.COM", "Ann")
    assert response.status_code == 200 and "Check your inbox" in response.text
    assert status_of("ann.reader@example.com") is SubscriptionStatus.PENDING
    [message] = messages_to("ann.reader@example.com")
    assert "confirm" in message["Subject"].lower()
    [confirm_url] = links(message, "/confirm/")
    path = confirm_url.removeprefix("http://testserver")
    page = client.get(path)
    assert page.status_code == 200 and "Confirm" in page.text
    assert status_of("ann.reader@example.com") is SubscriptionStatus.PENDING  # a GET changes nothing
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    done = client.post(path, data={"csrf_token": token})
    assert done.status_code == 200 and "subscribed" in done.text
    assert status_of("ann.reader@example.com") is SubscriptionStatus.CONFIRMED
    again = client.post(path, data={"csrf_token": token})  # double submit: still fine, nothing new
    assert again.status_code == 200
    with session_scope() as session:
        kinds = session.scalars(select(ConsentEvent.kind).order_by(ConsentEvent.id)).all()
        ip = session.scalar(select(ConsentEvent.ip).where(ConsentEvent.kind == ConsentKind.CONFIRMED))
    assert kinds == [ConsentKind.REQUESTED, ConsentKind.CONFIRMED]
    assert ip == "testclient"


def test_no_enumeration_identical_answers(client: TestClient) -> None:
    with session_scope() as session:
        weekly = mailing_lists.get_list(session, "weekly")
        service.subscribe(session, weekly, "confirmed@example.com", source=ConsentSource.ADMIN, confirmed=True,
                          consent_note="test")
        service.subscribe(session, weekly, "pending@example.com", source=ConsentSource.FORM)
        service.suppress(session, "suppressed@example.com", Reason.COMPLAINT, source=ConsentSource.ADMIN)
    bodies = []
    for address in ("new@example.com", "pending@example.com", "confirmed@example.com", "suppressed@example.com"):
        response = subscribe(client, address)
        assert response.status_code == 200
        bodies.append(re.sub(r'value="[^"]+"', "", response.text))
    assert len(set(bodies)) == 1
    assert messages_to("confirmed@example.com") == [] and messages_to("suppressed@example.com") == []
    assert status_of("suppressed@example.com") is None


def test_honeypot_does_nothing_but_looks_the_same(client: TestClient) -> None:
    response = subscribe(client, "bot@example.com", website="http://spam.example")
    assert response.status_code == 200 and "Check your inbox" in response.text
    assert status_of("bot@example.com") is None and outbox_messages() == []


def test_invalid_address_is_explained(client: TestClient) -> None:
    response = subscribe(client, "not-an-address")
    assert response.status_code == 400 and 'aria-invalid="true"' in response.text


def test_missing_csrf_is_refused(client: TestClient) -> None:
    response = client.post("/lists/weekly/subscribe", data={"email": "x@example.com"})
    assert response.status_code == 403 and status_of("x@example.com") is None


def test_rate_limit_per_address_and_ip(client: TestClient, settings) -> None:
    settings.subscribe_rate_per_email = 2
    codes = [subscribe(client, "same@example.com").status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    settings.subscribe_rate_per_ip = 4
    assert subscribe(client, "other@example.com").status_code == 200
    assert subscribe(client, "third@example.com").status_code == 429
    assert "Too many attempts" in subscribe(client, "fourth@example.com").text


def test_rate_limit_shared_through_redis(client: TestClient, settings, redis_url: str) -> None:
    settings.redis_url = redis_url
    settings.subscribe_rate_per_email = 1

    ratelimit.reset()
    assert subscribe(client, "r@example.com").status_code == 200
    assert subscribe(client, "r@example.com").status_code == 429
    other_process = RateLimiter(redis_url)  # a second web process sees the same counter
    assert other_process.hit("sub:addr:r@example.com", 1, settings.subscribe_rate_window_s) is False


def test_one_click_unsubscribe_rfc8058(client: TestClient) -> None:
    with session_scope() as session:
        weekly = mailing_lists.get_list(session, "weekly")
        sub = service.subscribe(session, weekly, "leaver@example.com", source=ConsentSource.ADMIN, confirmed=True,
                                consent_note="test").subscription
        assert sub is not None
        url = link(Purpose.UNSUBSCRIBE, sub.subscriber_id, weekly.id)
    fresh = TestClient(client.app)  # a mail client: no cookies at all
    path = url.removeprefix("http://testserver")
    response = fresh.post(path, content=b"List-Unsubscribe=One-Click",
                          headers={"Content-Type": "application/x-www-form-urlencoded"}, follow_redirects=False)
    assert response.status_code == 200 and response.text == "Unsubscribed."
    assert status_of("leaver@example.com") is SubscriptionStatus.UNSUBSCRIBED
    multipart = fresh.post(path, files={"List-Unsubscribe": (None, "One-Click")})
    assert multipart.status_code == 200  # idempotent, multipart accepted
    with session_scope() as session:
        count = session.scalar(select(func.count()).select_from(ConsentEvent)
                               .where(ConsentEvent.kind == ConsentKind.UNSUBSCRIBED))
    assert count == 1


def test_unsubscribe_page_get_changes_nothing_and_everything_scope(client: TestClient) -> None:
    with session_scope() as session:
        for slug in ("weekly", "offers"):
            service.subscribe(session, mailing_lists.get_list(session, slug), "both@example.com",
                              source=ConsentSource.ADMIN, confirmed=True, consent_note="test")
        subscriber_id = session.scalar(select(service.Subscriber.id))
        weekly_id = mailing_lists.get_list(session, "weekly").id
    path = link(Purpose.UNSUBSCRIBE, subscriber_id, weekly_id).removeprefix("http://testserver")
    page = client.get(path)
    assert "Digital Digest Weekly" in page.text and "Unsubscribe from everything" in page.text
    assert status_of("both@example.com") is SubscriptionStatus.CONFIRMED
    response = client.post(path, data={"scope": "all"})
    assert response.status_code == 200
    assert status_of("both@example.com") is SubscriptionStatus.UNSUBSCRIBED
    assert status_of("both@example.com", "offers") is SubscriptionStatus.UNSUBSCRIBED


def test_tokens_are_purpose_bound_tamper_proof_and_expire(client: TestClient, settings) -> None:
    subscribe(client, "t@example.com")
    with session_scope() as session:
        subscriber_id = session.scalar(select(service.Subscriber.id))
        list_id = mailing_lists.get_list(session, "weekly").id
    confirm_token = make_token(Purpose.CONFIRM, subscriber_id, list_id)
    # a confirm token cannot unsubscribe
    assert client.post(f"/unsubscribe/{confirm_token}", data={"List-Unsubscribe": "One-Click"}).status_code == 400
    tampered = confirm_token[:-2] + ("A" if confirm_token[-2] != "A" else "B") + confirm_token[-1]
    assert client.get(f"/confirm/{tampered}").status_code == 400
    other = make_token(Purpose.CONFIRM, subscriber_id + 1, list_id)  # ids it names do not exist
    assert client.get(f"/confirm/{other}").status_code == 400
    settings.confirm_token_max_age_days = -1  # every token is now past its age
    expired = client.get(f"/confirm/{confirm_token}")
    assert expired.status_code == 410 and "/lists/weekly/subscribe" in expired.text


def test_preferences_name_resubscribe_export_and_erase(client: TestClient) -> None:
    with session_scope() as session:
        weekly = mailing_lists.get_list(session, "weekly")
        sub = service.subscribe(session, weekly, "pref@example.com", "Old", source=ConsentSource.ADMIN,
                                confirmed=True, consent_note="test").subscription
        assert sub is not None
        subscriber_id, list_id = sub.subscriber_id, weekly.id
        service.unsubscribe(session, subscriber_id, list_id, source=ConsentSource.ADMIN)
    path = link(Purpose.PREFERENCES, subscriber_id).removeprefix("http://testserver")
    token = csrf(client, path)
    assert "Subscribe again" in client.get(path).text
    client.post(path, data={"csrf_token": token, "action": "resubscribe", "list_id": str(list_id)})
    assert status_of("pref@example.com") is SubscriptionStatus.CONFIRMED
    client.post(path, data={"csrf_token": token, "action": "name", "name": "New <b>Name</b>"})
    page = client.get(path)
    assert "New &lt;b&gt;Name&lt;/b&gt;" in page.text
    data = client.get(f"{path}/export").json()
    assert data["email"] == "pref@example.com" and data["name"] == "New <b>Name</b>"
    assert [e["kind"] for e in data["consent_events"]][:2] == ["imported", "confirmed"] or data["consent_events"]
    refused = client.post(path, data={"csrf_token": token, "action": "erase"})
    assert "Tick the box" in refused.text
    erased = client.post(path, data={"csrf_token": token, "action": "erase", "confirm_erase": "yes"})
    assert "erased" in erased.text
    with session_scope() as session:
        assert service.is_suppressed(session, "pref@example.com")
        subscriber = session.get(service.Subscriber, subscriber_id)
        assert subscriber is not None and subscriber.email.endswith("@erased.invalid") and subscriber.name == ""
    assert client.get(path).status_code == 400  # the erased subscriber's links no longer work


def test_welcome_email_after_confirm_when_enabled(client: TestClient) -> None:
    with session_scope() as session:
        mailing_lists.get_list(session, "weekly").welcome_enabled = True
    subscribe(client, "w@example.com")
    [message] = messages_to("w@example.com")
    path = links(message, "/confirm/")[0].removeprefix("http://testserver")
    client.post(path, data={"csrf_token": csrf(client, path)})
    subjects = [m["Subject"] for m in messages_to("w@example.com")]
    assert subjects[1] == "Welcome to Digital Digest Weekly"
    assert messages_to("w@example.com")[1]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_purge_pending(db_url: str) -> None:
    with session_scope() as session:
        weekly = mailing_lists.create_list(session, "p", "P")
        old = service.subscribe(session, weekly, "old@example.com", source=ConsentSource.FORM).subscription
        service.subscribe(session, weekly, "new@example.com", source=ConsentSource.FORM)
        assert old is not None
        old.created_at = utcnow() - timedelta(days=30)

    assert purge_pending.delay().get() == 1
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Subscription)) == 1
