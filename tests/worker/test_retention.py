"""Ledger compaction: a finished send gives up its per-recipient rows and keeps every figure staff see.

Real sends to the outbox, real clicks through the redirect, real SendGrid events through the webhook; then the
counters, the figures and the report are compared before and after compaction, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from mailer.db import session_scope, utcnow
from mailer.settings import Settings, SettingsError
from newsletter.cli import app as cli_app
from newsletter.web import tracking
from newsletter.web.app import create_app
from subscribers.models import Subscriber
from tests.support.audience import ROW_OF_PERSON, make_audience
from tests.support.mailbox import outbox_messages
from tests.worker.test_engagement import BROWSER, classify, tracked_links
from worker import campaigns, retention, sends
from worker.engagement_report import send_report
from worker.figures import send_figures
from worker.models import Delivery, DeliveryStatus, EngagementHit, Send, SendStatus
from worker.stats import send_counters


def _everything(send_id: int) -> tuple[dict, dict, dict]:
    with session_scope() as session:
        report = send_report(session, send_id)
        assert report is not None
        return send_counters(session, send_id), send_figures(session, send_id), report


def _age(send_id: int, days: int) -> None:
    with session_scope() as session:
        session.execute(update(Send).where(Send.id == send_id).values(finished_at=utcnow() - timedelta(days=days)))


def _rows(send_id: int) -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).where(Delivery.send_id == send_id)) or 0


@pytest.fixture(autouse=True)
def _fresh_links() -> None:
    tracking.links.clear()


def test_compaction_keeps_every_figure_and_removes_the_rows(db_url: str) -> None:
    audience = make_audience(6, pending=1, unsubscribed=1, suppressed=0)
    with session_scope() as session:
        send_id = sends.create(session, audience.issue_id, audience.list_id).id
    messages = {m["To"].addresses[0].addr_spec: m for m in outbox_messages()}
    reader = sorted(messages)[0]
    with session_scope() as session:  # one row failed, one skipped: the counters must keep them apart
        ids = list(session.scalars(select(Delivery.id).where(Delivery.send_id == send_id).order_by(Delivery.id)))
        session.execute(update(Delivery).where(Delivery.id == ids[1]).values(status=DeliveryStatus.FAILED,
                                                                             error="550 no such user"))
        session.execute(update(Delivery).where(Delivery.id == ids[2]).values(status=DeliveryStatus.SKIPPED))
        session.execute(update(Delivery).where(Delivery.id == ids[3]).values(bounce="hard",
                                                                             unsubscribed_at=utcnow()))
        sent_at = session.scalar(select(Delivery.sent_at).join(Subscriber, ROW_OF_PERSON)
                                 .where(Subscriber.email == reader))
    assert sent_at is not None
    tracking.clock = lambda: sent_at + timedelta(minutes=5)
    try:
        link = tracked_links(messages[reader])[0]
        client = TestClient(create_app(), headers={"User-Agent": BROWSER}, follow_redirects=False)
        assert client.get(link).status_code == 302
        classify(sent_at + timedelta(minutes=30))
    finally:
        tracking.clock = utcnow
    before = _everything(send_id)
    assert before[0]["sent"] == 4 and before[0]["failed"] == 1 and before[0]["skipped"] == 1
    assert before[2]["clicks"]["unique_human"] == 1 and before[1]["bounced_hard"] == 1

    assert retention.compact(30).sends == []  # finished today: too young
    _age(send_id, 31)
    done = retention.compact(30)
    assert done.sends == [send_id] and done.rows == 6 and _rows(send_id) == 0
    after = _everything(send_id)
    assert after == before
    with session_scope() as session:
        assert session.scalar(select(func.count()).where(EngagementHit.send_id == send_id)) == 0
        with pytest.raises(campaigns.CampaignError, match="compacted"):
            campaigns.retry_failed(session, send_id)
    assert retention.compact(30) == retention.Compaction([], 0)  # twice is once

    # The message's links still lead where they led; the click is answered, counted nowhere, and breaks nothing.
    client = TestClient(create_app(), headers={"User-Agent": BROWSER}, follow_redirects=False)
    tracking.links.clear()
    response = client.get(link)
    assert response.status_code == 302 and response.headers["location"].startswith("https://")
    classify(utcnow() + timedelta(minutes=30))
    assert _everything(send_id) == before


def test_a_running_or_unfinished_send_is_never_compacted(db_url: str) -> None:
    audience = make_audience(3, pending=0, unsubscribed=0, suppressed=0)
    with session_scope() as session:
        send_id = sends.create(session, audience.issue_id, audience.list_id).id
    with session_scope() as session:  # paused with its rows pending, as staff can leave a send for ever
        session.execute(update(Send).where(Send.id == send_id).values(status=SendStatus.PAUSED))
        session.execute(update(Delivery).where(Delivery.send_id == send_id).values(status=DeliveryStatus.PENDING))
    _age(send_id, 400)
    assert retention.compact(30).sends == [] and _rows(send_id) == 3
    with session_scope() as session:  # cancelled, but a batch still holds a row: wait for it
        session.execute(update(Send).where(Send.id == send_id).values(status=SendStatus.CANCELLED))
        session.execute(update(Delivery).where(Delivery.send_id == send_id).values(status=DeliveryStatus.SENDING))
    assert retention.compact(30).sends == [] and _rows(send_id) == 3
    with pytest.raises(ValueError, match="not compacted"):
        retention.delete_rows(send_id)
    assert _rows(send_id) == 3


def test_an_interrupted_compaction_is_finished_by_the_next_run(db_url: str) -> None:
    audience = make_audience(7, pending=0, unsubscribed=0, suppressed=0)
    with session_scope() as session:
        send_id = sends.create(session, audience.issue_id, audience.list_id).id
    _age(send_id, 60)
    before = _everything(send_id)
    with session_scope() as session:  # the figures were stored, then the process died before any delete
        assert retention.store_figures(session, send_id)
    assert _rows(send_id) == 7 and _everything(send_id) == before
    done = retention.compact(30, chunk=2)  # small chunks: four transactions
    assert done.sends == [] and done.rows == 7 and _rows(send_id) == 0
    assert _everything(send_id) == before


def test_the_cli_refuses_too_short_a_keep_and_compacts(db_url: str) -> None:
    audience = make_audience(2, pending=0, unsubscribed=0, suppressed=0)
    with session_scope() as session:
        send_id = sends.create(session, audience.issue_id, audience.list_id).id
    _age(send_id, 45)
    runner = CliRunner()
    refused = runner.invoke(cli_app, ["sends", "compact", "--older-than", "3"])
    assert refused.exit_code != 0 and "Traceback" not in refused.output and _rows(send_id) == 2
    result = runner.invoke(cli_app, ["sends", "compact", "--older-than", "30"])
    assert result.exit_code == 0, result.output
    assert "1 sends compacted, 2 delivery rows removed" in result.output and _rows(send_id) == 0
    shown = runner.invoke(cli_app, ["sends", "show", str(send_id)])
    assert shown.exit_code == 0 and "sent      2" in shown.output

    with pytest.raises(SettingsError, match="LEDGER_KEEP_DAYS"):  # the daily compaction would lose late bounces
        Settings(ledger_keep_days=7)
