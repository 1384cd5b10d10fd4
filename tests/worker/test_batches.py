"""The first pass as batch rows (worker/batches.py): a batch that goes out writes its batch row, not its recipients'
rows; its exceptions are written per row; every reader sees planned rows as their batch says; claims race safely;
cancel leaves a batch in flight alone; a downgrade gives planned rows their batch's outcome."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta

import pytest
from sqlalchemy import delete, func, select, text, update

from mailer.batch import Content, Recipient, Result, TransportError
from mailer.db import as_utc, session_scope, utcnow
from mailer.settings import Settings
from newsletter.migrate import downgrade, upgrade
from subscribers import service
from subscribers.models import ConsentSource, Subscriber
from tests.support.audience import Audience, claim_and_die, counters, make_audience, send_status, started_send
from tests.support.mailbox import recipients_in_outbox
from tests.support.sendgrid_standin import SendGridStandIn
from worker import batches, campaigns, engagement, engagement_report, reports
from worker.models import BatchState, Delivery, DeliveryStatus, EngagementHit, SendBatch, SendStatus


def planned(audience: Audience, **options: object) -> tuple[int, list[tuple[int, int]]]:
    with session_scope() as session:
        send_id = started_send(session, audience.issue_id, audience.list_id, **options)
    with session_scope() as session:
        campaigns.plan_send(session, send_id)
    with session_scope() as session:
        return send_id, campaigns.pending_ranges(session, send_id)


def row_versions(send_id: int) -> dict[int, str]:
    """Each delivery row's xmin: the transaction that last wrote it (PostgreSQL)."""
    with session_scope() as session:
        rows = session.execute(text("SELECT id, xmin::text FROM deliveries WHERE send_id = :s"), {"s": send_id})
        return {row_id: version for row_id, version in rows}


def statuses_by_row(send_id: int) -> Counter[str]:
    """The send's statuses counted row by row through `status_of`: what `counts` must agree with."""
    with session_scope() as session:
        return Counter(str(s) for s in session.scalars(select(batches.status_of()).where(Delivery.send_id == send_id)))


def unsubscribe(audience: Audience, index: int) -> None:
    with session_scope() as session:
        subscriber_id = session.scalar(select(Subscriber.id).where(Subscriber.email == audience.confirmed[index]))
        assert subscriber_id is not None
        service.unsubscribe(session, subscriber_id, audience.list_id, source=ConsentSource.FORM)


def test_a_batch_that_goes_out_writes_only_its_exceptions(pg_url: str, settings: Settings,
                                                         standin: SendGridStandIn) -> None:
    settings.batch_size = 1000
    audience = make_audience(60)
    send_id, [(first, last)] = planned(audience, transport="sendgrid")
    unsubscribe(audience, 7)  # after the plan: skipped at the re-check, the one row the batch writes
    before = row_versions(send_id)
    report = campaigns.send_batch(send_id, first, last)
    after = row_versions(send_id)
    rewritten = [row for row, version in after.items() if before[row] != version]
    assert (report.sent, report.skipped) == (59, 1) and len(rewritten) == 1
    with session_scope() as session:
        batch = session.scalars(select(SendBatch)).one()
        skipped = session.get(Delivery, rewritten[0])
        assert skipped is not None and skipped.status is DeliveryStatus.SKIPPED
        assert (batch.state, batch.size, batch.claimed_at) == (BatchState.DONE, 59, None)
        assert batch.provider_message_id and batch.sent_at is not None
    assert counters(send_id)["sent"] == 59 and counters(send_id)["skipped"] == 1
    assert send_status(send_id) is SendStatus.DONE
    assert standin.counts() == {e: 1 for i, e in enumerate(audience.confirmed) if i != 7}


def test_counters_agree_with_each_rows_status_in_every_state(db_url: str, settings: Settings) -> None:
    """Open, claimed and done batches, rows skipped at a re-check and rows of the per-row path side by side: the
    send's counters (from batch rows) and its rows one by one say the same."""
    settings.batch_size = 5
    audience = make_audience(20)
    send_id, ranges = planned(audience)
    assert len(ranges) == 4
    unsubscribe(audience, 1)
    unsubscribe(audience, 12)
    campaigns.send_batch(send_id, *ranges[0])  # done, one skipped (outbox: each row sent with its own id)
    with session_scope() as session:
        claim_and_die(session, send_id, *ranges[1])  # claimed
    with pytest.raises(TransportError):  # re-checked (one skipped), then the provider failed: open again
        campaigns.send_batch(send_id, *ranges[2], transport=Unreachable())
    expected = {"pending": 9, "sending": 5, "sent": 4, "skipped": 2, "failed": 0}
    by_row = statuses_by_row(send_id)
    assert {k: by_row.get(k, 0) for k in expected} == expected
    assert {k: counters(send_id)[k] for k in expected} == expected
    assert counters(send_id)["planned"] == 20 and DeliveryStatus.PLANNED.value not in by_row


class Unreachable:
    """A provider that cannot be reached: every call is a temporary failure."""

    name, max_batch = "unreachable", 1000

    def send(self, content: Content, recipients: Sequence[Recipient]) -> list[Result]:
        raise TransportError("connection refused", retryable=True)

    def close(self) -> None:
        pass


def test_two_workers_claiming_one_batch_at_once_send_it_once(pg_url: str, settings: Settings,
                                                             standin: SendGridStandIn) -> None:
    settings.batch_size = 1000
    standin.behaviour.delay_s = 0.3
    audience = make_audience(50)
    send_id, [(first, last)] = planned(audience, transport="sendgrid")
    start = threading.Barrier(4)
    reports_: list[campaigns.BatchReport] = []

    def worker() -> None:
        start.wait()
        reports_.append(campaigns.send_batch(send_id, first, last))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(r.sent for r in reports_) == [0, 0, 0, 50]
    assert standin.counts() == {e: 1 for e in audience.confirmed} and standin.state.requests == 1


def test_cancel_skips_open_batches_and_leaves_the_one_in_flight_alone(db_url: str, settings: Settings) -> None:
    settings.batch_size = 4
    audience = make_audience(12)
    send_id, ranges = planned(audience)
    with session_scope() as session:
        in_flight = claim_and_die(session, send_id, *ranges[0])
    with session_scope() as session:
        assert campaigns.cancel(session, send_id) == 8
    assert campaigns.send_batch(send_id, *ranges[1]).claimed == 0  # closed by the cancel: nothing to claim
    with session_scope() as session:
        states = Counter(session.scalars(select(SendBatch.state)))
        still = session.scalar(select(func.count()).where(Delivery.id.in_(in_flight),
                                                          Delivery.status == DeliveryStatus.PLANNED))
    assert states == {BatchState.DONE: 2, BatchState.CLAIMED: 1} and still == 4
    assert counters(send_id)["skipped"] == 8 and counters(send_id)["sending"] == 4


def test_a_subscribers_page_shows_a_planned_rows_batch_status_and_time(db_url: str, settings: Settings,
                                                                       standin: SendGridStandIn) -> None:
    audience = make_audience(3)
    send_id, [(first, last)] = planned(audience, transport="sendgrid")
    with session_scope() as session:
        subscriber_id = session.scalar(select(Subscriber.id).where(Subscriber.email == audience.confirmed[0]))
        assert subscriber_id is not None
        row = reports.subscriber_activity(session, subscriber_id, audience.confirmed[0]).deliveries[0]
    assert (row.status, row.sent_at) == (DeliveryStatus.PENDING, None)
    campaigns.send_batch(send_id, first, last)
    with session_scope() as session:
        row = reports.subscriber_activity(session, subscriber_id, audience.confirmed[0]).deliveries[0]
        own = session.get(Delivery, row.delivery.id)
    assert own is not None and own.status is DeliveryStatus.PLANNED and own.sent_at is None  # never written
    assert row.status is DeliveryStatus.SENT and row.sent_at is not None


def test_downgrade_gives_planned_rows_their_batchs_outcome(pg_url: str, settings: Settings) -> None:
    settings.batch_size = 3
    audience = make_audience(9)
    send_id, ranges = planned(audience)
    with session_scope() as session:  # a batch done with one id for the call, one claimed, one open
        claimed = batches.claim(session, send_id, *ranges[0])
        assert claimed is not None
        batches.finish(session, claimed[0], 3, "sg-one-id", utcnow())
        claim_and_die(session, send_id, *ranges[1])
    downgrade(pg_url, "0016")
    try:
        with session_scope() as session:
            rows = session.execute(text("SELECT status, provider_message_id FROM deliveries ORDER BY id")).all()
        assert [tuple(r) for r in rows] == [("sent", "sg-one-id")] * 3 + [("pending", None)] * 6
    finally:
        upgrade(pg_url)


def test_a_click_seconds_after_a_batch_went_out_is_a_machines(db_url: str, settings: Settings,
                                                               standin: SendGridStandIn) -> None:
    """The classifier's "within seconds of delivery" rule reads a planned row's send time from its batch: a row
    the batch never wrote still has a time to judge a scanner's click by."""
    audience = make_audience(2)
    send_id, [(first, last)] = planned(audience, transport="sendgrid")
    campaigns.send_batch(send_id, first, last)
    with session_scope() as session:
        sent_at = session.scalar(select(SendBatch.sent_at))
        rows = session.execute(select(Delivery.id, Delivery.sent_at).order_by(Delivery.id)).all()
        assert sent_at is not None and [at for _id, at in rows] == [None, None]
        for (delivery_id, _at), delay in zip(rows, (2, 600), strict=True):  # a scanner, then a person
            session.add(EngagementHit(send_id=send_id, delivery_id=delivery_id, kind="click", position=1,
                                      source="redirect", method="GET", at=as_utc(sent_at) + timedelta(seconds=delay),
                                      network="198.51.100.0/24", user_agent="Mozilla/5.0 (Windows NT 10.0)"))
    with session_scope() as session:
        assert engagement.classify_pending(session, now=utcnow() + timedelta(hours=1)) == 2
    with session_scope() as session:
        verdicts = session.execute(select(EngagementHit.verdict, EngagementHit.reason)
                                   .order_by(EngagementHit.delivery_id)).all()
    assert verdicts[0][0] == "machine" and "of delivery" in verdicts[0][1]
    assert verdicts[1][0] == "human"


@pytest.mark.parametrize("spans_at_most", [batches.SPANS_AT_MOST, 0], ids=["spans", "probe-per-row"])
def test_the_report_counts_what_went_out_while_batches_are_in_every_state(
        db_url: str, settings: Settings, standin: SendGridStandIn, monkeypatch: pytest.MonkeyPatch,
        spans_at_most: int) -> None:
    """The engagement report's "sent" (and every figure over sent rows) counts a done batch's planned rows and
    nobody in an open or claimed one, by the spans of unfinished batches or, past a bound, a probe per row."""
    monkeypatch.setattr(batches, "SPANS_AT_MOST", spans_at_most)
    settings.batch_size = 3
    audience = make_audience(12)
    send_id, ranges = planned(audience, transport="sendgrid")
    assert len(ranges) == 4
    campaigns.send_batch(send_id, *ranges[1])  # done between an open batch and a claimed one
    with session_scope() as session:
        claim_and_die(session, send_id, *ranges[2])
    unsubscribe(audience, 10)
    campaigns.send_batch(send_id, *ranges[3])  # done, one of them skipped

    def reported() -> int:
        with session_scope() as session:
            report = engagement_report.send_report(session, send_id)
            assert report is not None
            return int(report["sent"])

    assert reported() == 5 == counters(send_id)["sent"]
    campaigns.send_batch(send_id, *ranges[0])
    assert reported() == 8 == counters(send_id)["sent"]


def test_a_send_planned_before_the_batch_rows_finishes_the_per_row_way(db_url: str, settings: Settings) -> None:
    """Upgrading with a send running: its rows were planned `pending`, with no batch rows, and the per-row path
    sends each of them once."""
    settings.batch_size = 4
    audience = make_audience(10)
    send_id, _ranges = planned(audience)
    with session_scope() as session:  # as a plan before migration 0017 left it
        session.execute(update(Delivery).values(status=DeliveryStatus.PENDING))
        session.execute(delete(SendBatch))
    with session_scope() as session:
        ranges = campaigns.pending_ranges(session, send_id)
    assert len(ranges) == 3
    for first, last in ranges + ranges:  # redelivered, too
        campaigns.send_batch(send_id, first, last)
    assert counters(send_id)["sent"] == 10 and send_status(send_id) is SendStatus.DONE
    assert set(recipients_in_outbox().values()) == {1} and len(recipients_in_outbox()) == 10
