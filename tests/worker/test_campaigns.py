"""The engine on the ledger, inline (no broker): who is planned, exactly once, pause/resume/cancel/retry, leases."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import redis
from sqlalchemy import func, select, update

from mailer.db import session_scope, utcnow
from subscribers import service
from subscribers.models import ConsentSource, Subscriber
from tests.support.audience import age_leases, claim_and_die, counters, make_audience, send_status, started_send
from tests.support.mailbox import outbox_messages, recipients_in_outbox
from tests.support.sendgrid_standin import API_KEY, SendGridStandIn
from tests.support.smtp_sink import SMTPSink
from worker import batches, campaigns, leases, sends, tasks
from worker.models import Delivery, DeliveryStatus, Send, SendBatch, SendStatus
from worker.ratelimit import TokenBucket


def start(audience, **kwargs) -> int:
    with session_scope() as session:
        return started_send(session, audience.issue_id, audience.list_id, **kwargs)


def test_plan_includes_only_confirmed_unsuppressed_and_each_gets_one(db_url: str, settings) -> None:
    settings.batch_size = 7
    audience = make_audience(40)
    send_id = start(audience)
    assert tasks.plan_send.delay(send_id).get() == 40
    got = recipients_in_outbox()
    assert sorted(got) == sorted(audience.confirmed) and set(got.values()) == {1}
    assert send_status(send_id) is SendStatus.DONE and counters(send_id)["sent"] == 40
    message = outbox_messages()[0]
    to = message["To"].addresses[0].addr_spec
    html = message.get_body(("html",)).get_content()
    assert f"Reader {to.split('@')[0]}" in html and "__NL" not in html
    unsubscribe = str(message["List-Unsubscribe"]).strip().strip("<>")
    assert unsubscribe.startswith("http://testserver/unsubscribe/") and unsubscribe in html
    assert message["List-Id"] == "Digital Digest Weekly <weekly.news.example.com>"


def test_batch_run_twice_sends_nobody_twice(db_url: str, settings) -> None:
    settings.batch_size = 10
    audience = make_audience(25)
    send_id = start(audience)
    with session_scope() as session:
        campaigns.plan_send(session, send_id)
    with session_scope() as session:
        ranges = campaigns.pending_ranges(session, send_id)
    assert len(ranges) == 3
    for first, last in ranges + ranges:  # every batch delivered twice, as a broker may redeliver
        campaigns.send_batch(send_id, first, last)
    assert set(recipients_in_outbox().values()) == {1} and len(recipients_in_outbox()) == 25


def test_unsubscribed_after_plan_is_skipped(db_url: str) -> None:
    audience = make_audience(5)
    send_id = start(audience)
    with session_scope() as session:
        campaigns.plan_send(session, send_id)
        leaver = session.scalar(select(Subscriber).where(Subscriber.email == audience.confirmed[2]))
        assert leaver is not None
        service.unsubscribe(session, leaver.id, audience.list_id, source=ConsentSource.FORM)
        service.suppress(session, audience.confirmed[3], service.SuppressionReason.COMPLAINT,
                         source=ConsentSource.PROVIDER)
        # A suppression that kept only the address's hash (its address blanked, as erasure does) still counts.
        blanked = service.suppress(session, audience.confirmed[4], service.SuppressionReason.MANUAL,
                                   source=ConsentSource.ADMIN)
        blanked.email = None
    with session_scope() as session:
        [(first, last)] = campaigns.pending_ranges(session, send_id)
    report = campaigns.send_batch(send_id, first, last)
    assert (report.sent, report.skipped) == (2, 3)
    assert not {audience.confirmed[i] for i in (2, 3, 4)} & set(recipients_in_outbox())
    with session_scope() as session:
        errors = set(session.scalars(select(Delivery.error).where(Delivery.status == DeliveryStatus.SKIPPED)))
    assert errors == {"subscription unsubscribed", "address suppressed"}


def test_pause_resume_cancel_and_resend_rule(db_url: str, settings) -> None:
    settings.batch_size = 5
    audience = make_audience(20)
    send_id = start(audience)
    with session_scope() as session:
        campaigns.plan_send(session, send_id)
        ranges = campaigns.pending_ranges(session, send_id)
    campaigns.send_batch(send_id, *ranges[0])
    with session_scope() as session:
        campaigns.pause(session, send_id, "checking a typo")
    report = campaigns.send_batch(send_id, *ranges[1])
    assert report.paused and counters(send_id)["sent"] == 5 and counters(send_id)["pending"] == 15
    with session_scope() as session:
        campaigns.resume(session, send_id)
    tasks.resume_send(send_id)
    assert counters(send_id)["sent"] == 20 and send_status(send_id) is SendStatus.DONE
    assert set(recipients_in_outbox().values()) == {1}
    with session_scope() as session, pytest.raises(sends.SendError, match="already sent"):
        sends.create(session, audience.issue_id, audience.list_id)
    again = start(audience, allow_resend=True)
    with session_scope() as session:
        campaigns.plan_send(session, again)
        assert campaigns.cancel(session, again) == 20
    assert counters(again)["skipped"] == 20 and send_status(again) is SendStatus.CANCELLED


def test_failed_rows_retry_only_those(db_url: str, settings, monkeypatch) -> None:
    sink = SMTPSink().start()
    try:
        monkeypatch.setattr(settings, "smtp_host", "127.0.0.1")
        monkeypatch.setattr(settings, "smtp_port", sink.port)
        audience = make_audience(6)
        # A full mailbox: final for this attempt, but not a verdict on the address (a 5.1.1 would suppress it)
        sink.reject(audience.confirmed[1], "552 5.2.2 <{a}>: mailbox full")
        send_id = start(audience, transport="smtp")
        tasks.plan_send.delay(send_id).get()
        assert counters(send_id)["failed"] == 1 and counters(send_id)["sent"] == 5
        with session_scope() as session:
            error = session.scalar(select(Delivery.error).where(Delivery.status == DeliveryStatus.FAILED))
        assert error is not None and error.startswith("552")
        sink.handler.reject.clear()
        with session_scope() as session:
            assert campaigns.retry_failed(session, send_id) == 1
        tasks.resume_send(send_id)
        assert counters(send_id)["sent"] == 6 and send_status(send_id) is SendStatus.DONE
        assert set(sink.counts().values()) == {1} and len(sink.counts()) == 6
        assert "bounces+" in sink.received[0].mail_from  # VERP return path
    finally:
        sink.stop()


def test_lease_sweeper_returns_abandoned_rows(db_url: str) -> None:
    audience = make_audience(4)
    send_id = start(audience)
    with session_scope() as session:
        campaigns.plan_send(session, send_id)
        [(first, last)] = campaigns.pending_ranges(session, send_id)
        claimed = claim_and_die(session, send_id, first, last)
    assert len(claimed) == 4 and counters(send_id)["sending"] == 4
    with session_scope() as session:
        assert leases.sweep_batches(session, lease_s=60) == ({}, 0)  # still inside the lease
        age_leases(session, timedelta(minutes=20))
    assert tasks.sweep_leases.delay().get() == 4  # released and re-enqueued (inline: sent now)
    assert counters(send_id)["sent"] == 4 and len(recipients_in_outbox()) == 4


def test_scheduled_send_starts_when_due(db_url: str) -> None:
    audience = make_audience(3)
    with session_scope() as session:
        send_id = sends.create(session, audience.issue_id, audience.list_id,
                                    sends.SendOptions(scheduled_at=utcnow() + timedelta(hours=1))).id
    assert tasks.start_due_sends.delay().get() == []
    with session_scope() as session:
        session.execute(update(Send).values(scheduled_at=utcnow() - timedelta(seconds=1)))
    assert tasks.start_due_sends.delay().get() == [send_id]
    assert send_status(send_id) is SendStatus.DONE and len(recipients_in_outbox()) == 3


def test_sendgrid_auth_failure_pauses_send_with_reason(db_url: str, settings, monkeypatch) -> None:
    standin = SendGridStandIn().start()
    try:
        monkeypatch.setattr(settings, "sendgrid_host", standin.url)
        monkeypatch.setattr(settings, "sendgrid_api_key", __import__("pydantic").SecretStr("SG.revoked"))
        audience = make_audience(3)
        send_id = start(audience, transport="sendgrid")
        tasks.plan_send.delay(send_id).get()
        assert send_status(send_id) is SendStatus.PAUSED
        with session_scope() as session:
            reason = session.get(Send, send_id).status_reason  # type: ignore[union-attr]
        assert "API key" in reason and counters(send_id)["pending"] == 3
        monkeypatch.setattr(settings, "sendgrid_api_key", __import__("pydantic").SecretStr(API_KEY))
        with session_scope() as session:
            campaigns.resume(session, send_id)
        tasks.resume_send(send_id)
        assert counters(send_id)["sent"] == 3 and standin.counts() == {e: 1 for e in audience.confirmed}
        with session_scope() as session:  # the one id of the call, kept once on the batch's row
            ids = set(session.scalars(select(batches.message_id_of())))
            assert session.scalar(select(func.count()).select_from(SendBatch)) == 1
        assert len(ids) == 1 and None not in ids
    finally:
        standin.stop()


def test_send_test_goes_to_one_address_outside_the_ledger(db_url: str) -> None:
    audience = make_audience(2)
    with session_scope() as session:
        result = sends.send_test(session, audience.issue_id, "Editor@Example.com", list_id=audience.list_id)
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0
    assert result.ok
    [message] = outbox_messages()
    assert message["Subject"].startswith("[TEST] Digital Digest Weekly") and message["To"] == "editor@example.com"


def test_token_bucket_shared_in_redis(redis_url: str) -> None:
    one = TokenBucket(redis.Redis.from_url(redis_url), "smtp", rate=100.0, burst=50)
    two = TokenBucket(redis.Redis.from_url(redis_url), "smtp", rate=100.0, burst=50)  # another worker
    assert one.try_take(50) == 0
    wait = two.try_take(40)
    assert 0.3 <= wait <= 0.41  # the second worker sees the bucket the first one emptied
    started = time.monotonic()
    two.take(40)
    assert time.monotonic() - started >= 0.3
