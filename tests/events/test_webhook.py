"""The SendGrid Event Webhook: signatures verified on the raw body, replays and forgeries refused, every event kind
leading to its effect, duplicates changing nothing, and the loop closed: send -> events -> next send skips."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import func, select, update

from mailer.db import session_scope, utcnow
from mailer.events import DeliveryEvent, EventKind
from mailer.events import sendgrid as sendgrid_events
from newsletter.web.app import create_app
from subscribers import service
from subscribers.models import ConsentEvent, ConsentKind, Subscriber, Subscription, SubscriptionStatus, Suppression
from tests.support.audience import ROW_OF_PERSON, counters, make_audience, started_send
from tests.support.sendgrid_standin import API_KEY, SendGridStandIn, make_events
from worker import campaigns, engagement, events, tasks
from worker.figures import send_figures
from worker.models import Delivery, ProviderEvent, Send, SendStatus


@dataclass
class Signer:
    key: ec.EllipticCurvePrivateKey
    public: str

    def headers(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        stamp = str(timestamp or int(time.time()))
        signature = self.key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
                "X-Twilio-Email-Event-Webhook-Timestamp": stamp, "Content-Type": "application/json"}


def new_signer() -> Signer:
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return Signer(key, base64.b64encode(der).decode())


@dataclass
class Env:
    client: TestClient
    signer: Signer
    standin: SendGridStandIn

    def post(self, events: list[dict], **header_overrides: str):
        body = json.dumps(events).encode()
        return self.client.post("/webhooks/sendgrid", content=body, headers=self.signer.headers(body)
                                | header_overrides)


@pytest.fixture
def env(db_url: str, settings) -> Iterator[Env]:
    signer = new_signer()
    standin = SendGridStandIn().start()
    settings.sendgrid_webhook_public_key = signer.public
    settings.sendgrid_host = standin.url
    settings.sendgrid_api_key = SecretStr(API_KEY)
    settings.autopause_min_sample = 50
    yield Env(TestClient(create_app()), signer, standin)
    standin.stop()


def sendgrid_send(audience_size: int, **kwargs: int):
    audience = make_audience(audience_size, **kwargs)
    with session_scope() as session:
        send_id = started_send(session, audience.issue_id, audience.list_id, transport="sendgrid")
    tasks.plan_send.delay(send_id).get()
    return audience, send_id


def count(model: type, *where: object) -> int:
    with session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def test_valid_signature_accepted_and_duplicates_change_nothing(env: Env) -> None:
    _audience, send_id = sendgrid_send(10, pending=0, unsubscribed=0, suppressed=0)
    events = make_events(env.standin.accepted, {"bounce": 0.3})
    first = env.post(events)
    assert first.status_code == 200 and first.json()["stored"] == len(events)
    suppressed = count(Suppression)
    assert suppressed >= 1
    again = env.post(events)
    assert again.status_code == 200 and again.json()["stored"] == 0
    assert count(Suppression) == suppressed and count(ProviderEvent) == len(events)
    with session_scope() as session:
        figures = send_figures(session, send_id)
    assert figures["delivered"] + figures["bounced_hard"] == 10 and figures["bounced_hard"] == suppressed


def test_forged_requests_refused(env: Env) -> None:
    sendgrid_send(2)
    events = make_events(env.standin.accepted, {})
    body = json.dumps(events).encode()
    headers = env.signer.headers(body)
    tampered = body.replace(b"delivered", b"spamreport")
    assert env.client.post("/webhooks/sendgrid", content=tampered, headers=headers).status_code == 403
    wrong_key = new_signer().headers(body)
    assert env.client.post("/webhooks/sendgrid", content=body, headers=wrong_key).status_code == 403
    stale = env.signer.headers(body, timestamp=int(time.time()) - 3600)
    assert env.client.post("/webhooks/sendgrid", content=body, headers=stale).status_code == 403
    missing = {"Content-Type": "application/json"}
    assert env.client.post("/webhooks/sendgrid", content=body, headers=missing).status_code == 403
    junk = headers | {"X-Twilio-Email-Event-Webhook-Signature": "not base64!!"}
    assert env.client.post("/webhooks/sendgrid", content=body, headers=junk).status_code == 403
    assert count(ProviderEvent) == 0


def test_oversized_body_refused(env: Env, settings) -> None:
    settings.webhook_max_body_bytes = 1000
    body = json.dumps([{"sg_event_id": str(i), "event": "open", "email": "a@example.com"} for i in range(100)])
    response = env.client.post("/webhooks/sendgrid", content=body.encode(), headers=env.signer.headers(body.encode()))
    assert response.status_code == 413 and count(ProviderEvent) == 0


def test_every_event_kind_has_its_effect(env: Env, settings) -> None:
    settings.soft_bounce_limit = 2
    audience, send_id = sendgrid_send(8, pending=0, unsubscribed=0, suppressed=0)
    with session_scope() as session:  # SendGrid's opens and clicks count only where we did not track them ourselves
        session.execute(update(Send).values(track_opens=False, track_clicks=False))
    accepted = {a.email: a for a in env.standin.accepted}
    emails = audience.confirmed
    later = int(time.time()) + 120  # a person reads minutes after delivery

    def event(address: str, kind: str, **extra: object) -> dict:
        item = accepted[address]
        return {"email": address, "timestamp": int(time.time()), "event": kind,
                "sg_event_id": f"{kind}-{address}-{len(json.dumps(extra))}-{extra.get('n', 0)}",
                "sg_message_id": f"{item.message_id}.filter.0", "send_id": item.send_id,
                "delivery_id": item.delivery_id} | extra

    batch = [
        event(emails[0], "delivered"), event(emails[0], "open", timestamp=later),
        event(emails[0], "open", sg_machine_open=True, timestamp=later),
        event(emails[0], "click", url="https://example.com", timestamp=later),
        event(emails[1], "bounce", type="bounce", reason="550 user unknown", status="5.1.1"),
        event(emails[2], "bounce", type="blocked", reason="421 later", n=1),
        event(emails[3], "bounce", type="blocked", reason="421 later", n=1),
        event(emails[3], "bounce", type="blocked", reason="421 later", n=2),
        event(emails[4], "dropped", reason="Bounced Address"),
        event(emails[5], "dropped", reason="Spam Content (if spam checker app enabled)"),
        event(emails[6], "spamreport"),
        event(emails[7], "unsubscribe"),
        event(emails[0], "deferred", response="451 try later"),
        event(emails[0], "processed"),
    ]
    assert env.post(batch).status_code == 200
    with session_scope() as session:
        engagement.classify_pending(session, now=utcnow() + timedelta(minutes=5))
    with session_scope() as session:
        suppressed = dict(session.execute(select(Suppression.email, Suppression.reason)).tuples().all())
        statuses = dict(session.execute(select(Subscriber.email, Subscription.status)
                                        .join(Subscriber.subscriptions)).tuples().all())
        first = session.scalar(select(Delivery).join(Subscriber, ROW_OF_PERSON).where(Subscriber.email == emails[0]))
        assert first is not None
        assert (first.opens, first.machine_opens, first.clicks, first.delivered_at is not None) == (1, 1, 1, True)
        figures = send_figures(session, send_id)
        complained = session.scalar(select(ConsentEvent.provider_event_id).where(
            ConsentEvent.kind == ConsentKind.COMPLAINED))
    assert {k: v.value for k, v in suppressed.items()} == {
        emails[1]: "hard_bounce", emails[3]: "soft_bounce_limit", emails[4]: "dropped", emails[6]: "complaint"}
    assert statuses[emails[6]] is SubscriptionStatus.UNSUBSCRIBED  # complaint: unsubscribed everywhere too
    assert statuses[emails[7]] is SubscriptionStatus.UNSUBSCRIBED
    assert statuses[emails[2]] is SubscriptionStatus.CONFIRMED  # one soft bounce: counted only
    assert complained is not None  # the consent trail names the provider event
    assert figures["bounced_hard"] == 1 and figures["bounced_soft"] == 2 and figures["complained"] == 1
    assert figures["deferred"] == 1 and figures["opened"] == 1 and figures["clicked"] == 1


def test_group_resubscribe_and_unknown_delivery_kept(env: Env) -> None:
    audience, _send_id = sendgrid_send(1, pending=0, unsubscribed=0, suppressed=0)
    address = audience.confirmed[0]
    with session_scope() as session:
        subscriber = session.scalar(select(Subscriber).where(Subscriber.email == address))
        assert subscriber is not None
        service.unsubscribe(session, subscriber.id, None, source=service.ConsentSource.FORM)
    item = env.standin.accepted[0]
    events = [{"email": address, "event": "group_resubscribe", "sg_event_id": "r1", "timestamp": int(time.time()),
               "delivery_id": item.delivery_id, "send_id": item.send_id},
              {"email": "stranger@example.com", "event": "bounce", "type": "bounce", "sg_event_id": "x1",
               "timestamp": int(time.time()), "delivery_id": "999999", "send_id": "12345"}]
    assert env.post(events).status_code == 200
    with session_scope() as session:
        status = session.scalar(select(Subscription.status))
        stranger = session.scalar(select(ProviderEvent).where(ProviderEvent.provider_event_id == "x1"))
    assert status is SubscriptionStatus.CONFIRMED
    assert stranger is not None and stranger.delivery_id is None and stranger.processed_at is not None
    assert count(Suppression, Suppression.email == "stranger@example.com") == 1  # still a dead address


@pytest.mark.parametrize(("share", "paused"), [(0.10, True), (0.01, False)])
def test_autopause_on_hard_bounce_rate(env: Env, settings, share: float, paused: bool) -> None:
    settings.batch_size = 100
    audience = make_audience(400, pending=0, unsubscribed=0, suppressed=0)
    with session_scope() as session:
        send_id = started_send(session, audience.issue_id, audience.list_id, transport="sendgrid")
        campaigns.plan_send(session, send_id)
    with session_scope() as session:
        ranges = campaigns.pending_ranges(session, send_id)
    for first, last in ranges[:2]:  # half sent, then the events come back
        campaigns.send_batch(send_id, first, last)
    assert env.post(make_events(env.standin.accepted, {"bounce": share}, seed=3)).status_code == 200
    with session_scope() as session:
        send = session.get(Send, send_id)
        assert send is not None
        assert (send.status is SendStatus.PAUSED) is paused
        if paused:
            assert "hard-bounce rate" in send.status_reason
    for first, last in ranges[2:]:
        campaigns.send_batch(send_id, first, last)
    assert (counters(send_id)["sent"] == 200) is paused


def test_loop_send_events_suppress_next_send_skips(env: Env) -> None:
    audience, _ = sendgrid_send(20, pending=0, unsubscribed=0, suppressed=0)
    events = make_events(env.standin.accepted, {"bounce": 0.2, "spamreport": 0.1}, seed=11)
    assert env.post(events).status_code == 200
    with session_scope() as session:
        gone = set(session.scalars(select(Suppression.email)))
    assert gone
    env.standin.state.accepted.clear()
    with session_scope() as session:
        again_id = started_send(session, audience.issue_id, audience.list_id, transport="sendgrid", allow_resend=True)
    tasks.plan_send.delay(again_id).get()
    second = set(env.standin.counts())
    assert second == set(audience.confirmed) - gone and not (second & gone)


def test_unsigned_accepted_only_when_verification_disabled(env: Env, settings) -> None:
    body = json.dumps([{"sg_event_id": "u1", "event": "processed", "email": "a@example.com"}]).encode()
    plain = {"Content-Type": "application/json"}
    assert env.client.post("/webhooks/sendgrid", content=body, headers=plain).status_code == 403
    settings.sendgrid_webhook_verify = False
    assert env.client.post("/webhooks/sendgrid", content=body, headers=plain).status_code == 200


def signed_post(env: Env, body: bytes):
    return env.client.post("/webhooks/sendgrid", content=body, headers=env.signer.headers(body))


def test_poison_events_rejected_and_the_next_complaint_still_applies(env: Env) -> None:
    audience, _send_id = sendgrid_send(3, pending=0, unsubscribed=0, suppressed=0)
    accepted = {a.email: a for a in env.standin.accepted}
    reader, target, complainer = audience.confirmed
    now = int(time.time())

    def event(address: str, kind: str, event_id: str, **extra: object) -> dict:
        item = accepted[address]
        return {"email": address, "timestamp": now, "event": kind, "sg_event_id": event_id,
                "sg_message_id": f"{item.message_id}.filter.0", "send_id": item.send_id,
                "delivery_id": item.delivery_id} | extra

    nested: object = "x"
    for _ in range(400):
        nested = [nested]
    body = ("[" + ", ".join([
        json.dumps(event(reader, "delivered", "ok-1")),
        json.dumps(event(target, "bounce", "poison-id", type="bounce", delivery_id=str(2**63))),
        json.dumps(event(target, "open", "poison-time", timestamp=0)).replace('"timestamp": 0', '"timestamp": 1e400'),
        json.dumps(event(target, "click", "poison-deep", url=nested)),
        json.dumps(nested),
    ]) + "]").encode()
    response = signed_post(env, body)
    assert response.status_code == 200, response.text
    assert response.json() == {"received": 5, "stored": 5, "rejected": 4}
    with session_scope() as session:
        errors = dict(session.execute(select(ProviderEvent.provider_event_id, ProviderEvent.error)
                                      .where(ProviderEvent.error.is_not(None))).tuples().all())
        delivered = session.scalar(select(Delivery.delivered_at).join(Subscriber, ROW_OF_PERSON)
                                   .where(Subscriber.email == reader))
    assert errors.keys() >= {"poison-id", "poison-time", "poison-deep"} and len(errors) == 4
    assert errors["poison-id"] == "delivery_id out of range" and "timestamp" in errors["poison-time"]
    assert delivered is not None  # the valid event of the same batch was applied
    assert count(Suppression) == 0  # the rejected bounce did nothing
    spam = signed_post(env, json.dumps([event(complainer, "spamreport", "spam-1")]).encode())
    assert spam.status_code == 200 and spam.json()["rejected"] == 0
    assert count(Suppression, Suppression.email == complainer, Suppression.reason == "complaint") == 1


def test_an_unappliable_stored_event_is_rejected_and_the_rest_applied(env: Env) -> None:
    """Defence in depth: an event that passed (or predates) validation and fails to apply is marked, not retried
    forever in front of the others."""
    audience, _send_id = sendgrid_send(1, pending=0, unsubscribed=0, suppressed=0)
    address = audience.confirmed[0]
    now = datetime.now(UTC)
    with session_scope() as session:
        events.store(session, [
            DeliveryEvent(provider="sendgrid", event_id="old-poison", kind=EventKind.BOUNCE, email=address,
                          occurred_at=now, delivery_id=2**63),
            DeliveryEvent(provider="sendgrid", event_id="spam", kind=EventKind.SPAMREPORT, email=address,
                          occurred_at=now)])
    events.apply_pending()
    with session_scope() as session:
        rows = dict(session.execute(select(ProviderEvent.provider_event_id, ProviderEvent.error)).tuples().all())
    assert rows["spam"] is None and rows["old-poison"] is not None
    assert count(Suppression, Suppression.email == address, Suppression.reason == "complaint") == 1
    assert count(ProviderEvent, ProviderEvent.processed_at.is_(None)) == 0


def test_signed_body_nested_beyond_the_parser_is_kept_rejected(env: Env, settings) -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    response = signed_post(env, body)
    assert response.status_code == 200 and response.json()["rejected"] == 1
    assert signed_post(env, body).json()["stored"] == 0  # SendGrid's retry of the same body: stored once
    with session_scope() as session:
        error = session.scalar(select(ProviderEvent.error))
    assert error == "the JSON is nested too deeply"
    settings.sendgrid_webhook_verify = False  # unsigned garbage is refused, not stored
    plain = env.client.post("/webhooks/sendgrid", content=b"{not json", headers={"Content-Type": "application/json"})
    assert plain.status_code == 400 and count(ProviderEvent) == 1


VALID = {"email": "reader@example.com", "event": "bounce", "type": "bounce", "sg_event_id": "e1",
         "timestamp": 1764000000, "sg_message_id": "abc.filter.0", "send_id": "3", "delivery_id": "7",
         "reason": "550 5.1.1 unknown"}


@pytest.mark.parametrize(("change", "error"), [
    ({"delivery_id": str(2**63)}, "delivery_id out of range"),
    ({"delivery_id": 2**63}, "delivery_id out of range"),
    ({"send_id": "-1"}, "send_id must be an integer"),
    ({"delivery_id": 7.5}, "delivery_id must be an integer"),
    ({"send_id": True}, "send_id must be an integer"),
    ({"timestamp": "yesterday"}, "timestamp has the wrong type (str)"),
    ({"timestamp": 10**12}, "timestamp out of range"),
    ({"email": "x" * 400 + "@example.com"}, "email is too long or not plain text"),
    ({"email": "reader@example.com\r\nBcc: x@example.com"}, "email is too long or not plain text"),
    ({"email": "no-at-sign"}, "email is not an address"),
    ({"sg_event_id": {"$ne": 1}}, "sg_event_id missing or not a short text"),
    ({"reason": {"nested": [1]}}, "reason has the wrong type (dict)"),
    ({"event": 5}, "event has the wrong type (int)"),
])
def test_each_field_validated_at_the_edge(change: dict, error: str) -> None:
    [event] = sendgrid_events.parse(json.dumps([VALID | change]).encode(), now=1764000000)
    assert event.rejected == error and event.kind is EventKind.OTHER and event.email is None


def test_a_valid_event_keeps_only_documented_fields() -> None:
    item = VALID | {"reason": "550\r\n5.1.1 unknown" + "x" * 5000, "extra": [[["deep"]]], "category": ["news"]}
    [event] = sendgrid_events.parse(json.dumps([item]).encode(), now=1764000000)
    assert event.rejected is None and (event.delivery_id, event.send_id, event.kind) == (7, 3, EventKind.BOUNCE)
    assert "extra" not in event.payload and event.reason.startswith("550  5.1.1") and len(event.reason) == 1000


def test_an_event_without_our_ids_is_matched_by_the_batchs_message_id(env: Env) -> None:
    """A batch that went out keeps SendGrid's one id for the call on its batch row, not on each recipient's row;
    an event that carries only that id and the address still finds its delivery, and no one else's."""
    audience, send_id = sendgrid_send(6, pending=0, unsubscribed=0, suppressed=0)
    item = next(a for a in env.standin.accepted if a.email == audience.confirmed[2])
    with session_scope() as session:
        assert session.scalar(select(func.count()).where(Delivery.provider_message_id.is_not(None))) == 0
    bare = {"email": item.email, "timestamp": int(time.time()), "event": "delivered", "sg_event_id": "bare-1",
            "sg_message_id": f"{item.message_id}.filter.0"}
    stranger = bare | {"email": "someone-else@example.com", "sg_event_id": "bare-2"}
    assert env.post([bare, stranger]).status_code == 200
    with session_scope() as session:
        delivered = session.execute(select(Subscriber.email, Delivery.delivered_at).join(Delivery, ROW_OF_PERSON)
                                    .where(Delivery.send_id == send_id, Delivery.delivered_at.is_not(None))).all()
        other = session.scalar(select(ProviderEvent).where(ProviderEvent.provider_event_id == "bare-2"))
    assert [email for email, _at in delivered] == [item.email]
    assert other is not None and other.delivery_id is None
