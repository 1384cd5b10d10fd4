"""Recovery at the default settings, in process (no broker): leases renewed by a live worker and short for a dead
one, a database outage after the provider accepted a batch, the sweeper closing and re-planning sends, resume of a
running send, crashes that are not attempts, and the re-check of unsubscribes just before the provider call."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis as redis_lib
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from typer.testing import CliRunner

from mailer import db as db_module
from mailer.db import session_scope, utcnow
from mailer.settings import Settings, reset_settings
from newsletter.cli import app as cli_app
from newsletter.migrate import upgrade
from newsletter.web.app import create_app
from subscribers.models import Subscriber
from subscribers.tokens import Purpose, link
from tests.support.audience import (
    ROW_OF_PERSON,
    Audience,
    age_leases,
    claim_and_die,
    counters,
    delivery_status,
    make_audience,
    send_status,
    started_send,
)
from tests.support.postgres import PrivatePostgres
from tests.support.sendgrid_standin import SendGridStandIn
from tests.support.smtp_sink import SMTPSink
from tests.support.workers import wait_for
from worker import campaigns, leases, tasks
from worker.models import Delivery, DeliveryStatus, Send, SendStatus
from worker.ratelimit import TokenBucket


def start(audience: Audience, **options: object) -> int:
    with session_scope() as session:
        return started_send(session, audience.issue_id, audience.list_id, **options)


def planned_range(send_id: int) -> tuple[int, int]:
    with session_scope() as session:
        campaigns.plan_send(session, send_id)
    with session_scope() as session:
        [(first, last)] = campaigns.pending_ranges(session, send_id)
    return first, last


def test_dead_workers_rows_return_within_a_minute_by_default(db_url: str) -> None:
    audience = make_audience(4)
    send_id = start(audience)
    first, last = planned_range(send_id)
    with session_scope() as session:
        claim_and_die(session, send_id, first, last)  # nobody renews the claim
        age_leases(session, timedelta(seconds=45))
    assert tasks.sweep_leases.delay().get() == 4  # at the default lease, 45 s of silence is a dead worker
    assert counters(send_id)["sent"] == 4 and send_status(send_id) is SendStatus.DONE


def test_slow_batch_keeps_its_lease_while_its_worker_lives(db_url: str, settings: Settings,
                                                           standin: SendGridStandIn) -> None:
    settings.claim_lease_s = 1  # the provider call below lasts three leases
    standin.behaviour.delay_s = 3.0
    audience = make_audience(20)
    send_id = start(audience, transport="sendgrid")
    first, last = planned_range(send_id)
    reports: list[campaigns.BatchReport] = []
    worker = threading.Thread(target=lambda: reports.append(campaigns.send_batch(send_id, first, last)))
    worker.start()
    released: dict[int, list[tuple[int, int]]] = {}
    while worker.is_alive():  # the sweeper, far more often than beat would run it
        with session_scope() as session:
            released |= leases.sweep_batches(session, settings.claim_lease_s)[0]
        time.sleep(0.1)
    worker.join()
    assert released == {}
    assert reports[0].sent == 20 and standin.counts() == {e: 1 for e in audience.confirmed}


@pytest.fixture
def private_pg(monkeypatch: pytest.MonkeyPatch) -> Iterator[PrivatePostgres]:
    """A PostgreSQL of this test's own, which it may stop and start (never the machine's shared server)."""
    server = PrivatePostgres().start()
    url = server.create_database("newsletter")
    upgrade(url)
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", url)
    reset_settings()
    db_module.dispose_engines()
    yield server
    db_module.dispose_engines()
    server.destroy()


def test_database_down_when_the_provider_answers_resends_nothing(private_pg: PrivatePostgres, settings: Settings,
                                                                 standin: SendGridStandIn) -> None:
    settings.batch_size = 1000  # one batch of 300
    standin.behaviour.delay_s = 1.0
    audience = make_audience(300)
    send_id = start(audience, transport="sendgrid")
    first, last = planned_range(send_id)
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(campaigns.send_batch(send_id, first, last))
        except Exception as exc:  # shown by the assertion below
            outcome.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    wait_for(lambda: standin.state.requests >= 1, timeout=10, what="the batch to reach the provider")
    private_pg.stop("immediate")  # the database dies while the provider holds the batch
    wait_for(lambda: len(standin.accepted) == 300, timeout=10, what="the provider to accept")
    time.sleep(1.5)  # the worker finds the database gone
    private_pg.start()
    worker.join(timeout=60)
    assert isinstance(outcome[0], campaigns.BatchReport), outcome
    assert outcome[0].sent == 300 and counters(send_id)["sent"] == 300
    tasks.sweep_leases.delay().get()
    tasks.resume_send(send_id)
    assert standin.counts() == {e: 1 for e in audience.confirmed}
    assert send_status(send_id) is SendStatus.DONE


def test_sweeper_closes_a_running_send_with_nothing_left(db_url: str) -> None:
    audience = make_audience(5)
    send_id = start(audience)
    tasks.plan_send.delay(send_id).get()
    with session_scope() as session:  # its last worker died after marking its rows, before closing the send
        session.execute(update(Send).values(status=SendStatus.RUNNING, finished_at=None))
    tasks.sweep_leases.delay().get()
    assert send_status(send_id) is SendStatus.DONE and counters(send_id)["sent"] == 5


def test_sweeper_plans_a_send_whose_plan_task_was_lost(db_url: str) -> None:
    audience = make_audience(5)
    send_id = start(audience)  # started, but the plan task never reached a worker
    tasks.sweep_leases.delay().get()
    assert send_status(send_id) is SendStatus.RUNNING  # within a lease: its plan may still be queued
    with session_scope() as session:
        session.execute(update(Send).values(started_at=utcnow() - timedelta(minutes=2)))
    tasks.sweep_leases.delay().get()
    assert send_status(send_id) is SendStatus.DONE and counters(send_id)["sent"] == 5


def test_cli_resume_of_a_running_send_whose_queue_was_lost(db_url: str) -> None:
    audience = make_audience(7)
    send_id = start(audience)
    planned_range(send_id)  # planned; its batches were lost with the queue
    result = CliRunner().invoke(cli_app, ["sends", "resume", str(send_id)])
    assert result.exit_code == 0, result.output
    assert send_status(send_id) is SendStatus.DONE and counters(send_id)["sent"] == 7


@pytest.mark.parametrize("form", [{"List-Unsubscribe": "One-Click"}, {}], ids=["one-click", "page"])
def test_a_leaver_in_a_batch_being_handed_over_is_told_only_after_the_handover(
        pg_url: str, standin: SendGridStandIn, form: dict[str, str]) -> None:
    """Their unsubscribe commits during the provider call of a batch that re-checked them before it: they get this
    issue (it was already on its way), but the answer "unsubscribed" comes only once the provider has it, so nobody
    is told they have left and then mailed. The batch pays nothing for this; the leaver waits one provider call."""
    audience = make_audience(40)
    leaver = audience.confirmed[17]
    send_id = start(audience, transport="sendgrid")
    first, last = planned_range(send_id)
    standin.state.behaviour.delay_s = 1.0  # the provider takes a second to answer
    reports: list[campaigns.BatchReport] = []
    worker = threading.Thread(target=lambda: reports.append(campaigns.send_batch(send_id, first, last)))
    worker.start()
    wait_for(lambda: standin.state.requests == 1, timeout=10, what="the provider call")
    with session_scope() as session:
        subscriber_id = session.scalar(select(Subscriber.id).where(Subscriber.email == leaver))
    assert subscriber_id is not None
    url = link(Purpose.UNSUBSCRIBE, subscriber_id, audience.list_id).removeprefix("http://testserver")
    response = TestClient(create_app()).post(url, data=form)
    with session_scope() as session:
        at_answer = delivery_status(session, send_id, subscriber_id)
    worker.join(timeout=30)
    assert response.status_code == 200
    assert at_answer is DeliveryStatus.SENT  # handed over and recorded before the answer
    assert standin.counts()[leaver] == 1 and reports[0].sent == 40


def test_waiting_for_a_handover_is_bounded(db_url: str) -> None:
    audience = make_audience(2)
    send_id = start(audience)
    first, last = planned_range(send_id)
    with session_scope() as session:
        ids = claim_and_die(session, send_id, first, last)  # in flight, and its worker never comes back
        stuck, free = session.execute(select(Delivery.subscriber_id).where(Delivery.id.in_(ids))).scalars().all()
        session.execute(update(Delivery).where(Delivery.subscriber_id == free).values(status=DeliveryStatus.SENT))
    assert campaigns.in_flight_among([stuck, free]) == {stuck}
    started = time.monotonic()
    assert campaigns.await_handover(stuck, limit_s=0.3) is False
    assert 0.3 <= time.monotonic() - started < 5
    assert campaigns.await_handover(free, limit_s=0.3) is True


def test_release_after_a_crash_is_not_an_attempt(db_url: str, settings: Settings,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    sink = SMTPSink().start()
    try:
        monkeypatch.setattr(settings, "smtp_host", "127.0.0.1")
        monkeypatch.setattr(settings, "smtp_port", sink.port)
        audience = make_audience(3)
        busy = audience.confirmed[0]
        send_id = start(audience, transport="smtp")
        first, last = planned_range(send_id)
        for _crash in range(settings.max_delivery_attempts + 1):  # claimed, worker killed, lease swept
            with session_scope() as session:
                claim_and_die(session, send_id, first, last)
                age_leases(session, timedelta(hours=1))
            with session_scope() as session:
                assert leases.sweep_batches(session, settings.claim_lease_s) == ({send_id: [(first, last)]}, 3)
        sink.reject(busy, "451 4.3.0 <{a}>: try again later")  # then one temporary failure
        report = campaigns.send_batch(send_id, first, last)
        assert (report.sent, report.retry, report.failed) == (2, 1, 0)
        with session_scope() as session:
            row = session.execute(select(Delivery.status, Delivery.attempts).join(Subscriber, ROW_OF_PERSON)
                                  .where(Subscriber.email == busy)).one()
        assert tuple(row) == (DeliveryStatus.PENDING, 1)
    finally:
        sink.stop()


def test_unsubscribe_committed_while_the_batch_waits_is_not_sent(pg_url: str, redis_url: str,
                                                                 standin: SendGridStandIn) -> None:
    audience = make_audience(150)
    leaver = audience.confirmed[70]
    send_id = start(audience, transport="sendgrid")
    first, last = planned_range(send_id)
    bucket = TokenBucket(redis_lib.Redis.from_url(redis_url), "sendgrid", rate=100.0, burst=10)
    assert bucket.try_take(10) == 0  # the shared rate limit is spent: the batch will wait ~1.5 s for it
    with session_scope() as session:
        subscriber_id = session.scalar(select(Subscriber.id).where(Subscriber.email == leaver))
    assert subscriber_id is not None
    url = link(Purpose.UNSUBSCRIBE, subscriber_id, audience.list_id).removeprefix("http://testserver")
    reports: list[campaigns.BatchReport] = []
    worker = threading.Thread(target=lambda: reports.append(
        campaigns.send_batch(send_id, first, last, throttle=bucket.take)))
    worker.start()
    wait_for(lambda: counters(send_id)["sending"] == 150, timeout=10, what="the batch to be claimed")
    response = TestClient(create_app()).post(url, data={"List-Unsubscribe": "One-Click"})  # RFC 8058
    assert response.status_code == 200  # committed during the wait; answered once the batch let go of them
    worker.join(timeout=30)
    assert standin.counts()[leaver] == 0 and len(standin.counts()) == 149
    assert reports[0].skipped == 1 and counters(send_id)["skipped"] == 1
