"""Auto-pause: a running send stops itself when what comes back says the list or the content is hurting us.

Mailbox providers judge senders on bounce and complaint rates (Gmail/Yahoo: complaints under 0.3%); a send that
keeps going through a bad list burns the domain's reputation for every later send.

Rates are measured over deliveries whose outcome is known, never over rows merely handed to the provider: events
come back seconds to minutes after sending, so the newest sent rows of a running send have no outcome yet and
would read as a clean list. Outcomes are counted where they become known (`count`), into per-send rows of
BUCKET_S seconds; the check reads the newest buckets until it has about `autopause_window` outcomes. That costs a
few primary-key rows, whatever the size of the send.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from mailer.db import rowcount, table_of, upsert_insert, utcnow
from mailer.settings import get_settings
from worker.models import Send, SendOutcome, SendStatus

BUCKET_S = 10
MAX_BUCKETS = 360  # an hour of buckets at most: older outcomes say little about the list being sent now


def _bucket(moment: datetime) -> datetime:
    return moment.replace(second=moment.second - moment.second % BUCKET_S, microsecond=0)


def count(session: Session, send_id: int, *, outcomes: int = 0, hard_bounces: int = 0, complaints: int = 0) -> None:
    """Add what became known about the send's deliveries, in the caller's transaction.

    Call it last in the transaction: the bucket row is a lock shared by everyone counting for the send, and a
    transaction that takes it last only has its commit left to do while others wait.
    """
    if not (outcomes or hard_bounces or complaints):
        return
    insert = upsert_insert(session)
    table = table_of(SendOutcome)
    statement = insert(table).values(send_id=send_id, bucket=_bucket(utcnow()), outcomes=outcomes,
                                     hard_bounces=hard_bounces, complaints=complaints)
    session.execute(statement.on_conflict_do_update(
        index_elements=["send_id", "bucket"],
        set_={"outcomes": table.c.outcomes + statement.excluded.outcomes,
              "hard_bounces": table.c.hard_bounces + statement.excluded.hard_bounces,
              "complaints": table.c.complaints + statement.excluded.complaints}))


def rates(session: Session, send_id: int, window: int) -> tuple[int, float, float]:
    """(outcomes known, hard-bounce rate, complaint rate) over the send's newest `window` or so known outcomes."""
    rows = session.execute(select(SendOutcome.outcomes, SendOutcome.hard_bounces, SendOutcome.complaints)
                           .where(SendOutcome.send_id == send_id)
                           .order_by(SendOutcome.bucket.desc()).limit(MAX_BUCKETS))
    known = hard = complaints = 0
    for outcomes, hard_bounces, complained in rows:
        known, hard, complaints = known + outcomes, hard + hard_bounces, complaints + complained
        if known >= window:
            break
    if not known:
        return 0, 0.0, 0.0
    return known, min(hard / known, 1.0), min(complaints / known, 1.0)


def check_send(session: Session, send_id: int) -> str | None:
    """Pause the send if a threshold is passed; returns the reason when it paused."""
    settings = get_settings()
    send = session.get(Send, send_id)
    if send is None or send.status is not SendStatus.RUNNING:
        return None
    sample, hard, complaints = rates(session, send_id, settings.autopause_window)
    if sample < settings.autopause_min_sample:
        return None
    reason = None
    if hard > settings.autopause_hard_bounce_rate:
        reason = (f"Auto-paused: hard-bounce rate {hard:.1%} over the last {sample} deliveries whose outcome is "
                  f"known (limit {settings.autopause_hard_bounce_rate:.1%}). Check the list before resuming.")
    elif complaints > settings.autopause_complaint_rate:
        reason = (f"Auto-paused: complaint rate {complaints:.2%} over the last {sample} deliveries whose outcome is "
                  f"known (limit {settings.autopause_complaint_rate:.2%}).")
    if reason is None:
        return None
    paused = rowcount(session.execute(update(Send).where(Send.id == send_id, Send.status == SendStatus.RUNNING)
                                      .values(status=SendStatus.PAUSED, status_reason=reason)))
    if paused:
        # The evidence is in the reason. A person who resumes has looked at it: the send starts a fresh window
        # instead of pausing again on the same outcomes.
        session.execute(delete(SendOutcome).where(SendOutcome.send_id == send_id))
    return reason if paused else None
