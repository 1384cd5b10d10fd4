"""Compaction of the ledger: a finished send keeps its figures and gives up its per-recipient rows.

The ledger is one row per recipient per send, and after a send has settled nothing needs those rows but its
figures: the counters, the figures of what came back and the engagement report. `compact` stores those three on
the send (`Send.figures`, readers ask `worker.stats.compacted_figures` first, so every front end shows the same
numbers as before), then deletes the rows in chunks, each in its own short transaction so a million-row send never
holds a long lock or a huge transaction. An interrupted run leaves a compacted send with rows still to delete; the
next run finishes them.

What a compacted send no longer has: a person's delivery history for it (the subscriber page lists fewer rows), a
late VERP bounce's proof (hence at least `MIN_LEDGER_KEEP_DAYS`), and counting of clicks made after compaction
(the links still redirect: `send_links` stays; the clicks are classified but count nowhere). Unsubscribe links
carry the subscriber and list, not the delivery, so they work for ever.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.orm import Session

from mailer.db import rowcount, session_scope, table_of, utcnow
from worker import batches
from worker.engagement_report import send_report
from worker.figures import send_figures
from worker.models import Delivery, EngagementHit, ProviderEvent, Send, SendBatch, SendOutcome, SendStatus
from worker.stats import send_counters

log = logging.getLogger(__name__)

FINISHED = (SendStatus.DONE, SendStatus.CANCELLED, SendStatus.FAILED)
CHUNK = 20_000  # rows per delete transaction
_DELIVERIES = table_of(Delivery)


@dataclass(frozen=True)
class Compaction:
    sends: list[int]  # compacted by this run
    rows: int  # delivery rows deleted by this run (including rows of sends compacted by an interrupted run)


def compactable(session: Session, older_than: timedelta, now: datetime | None = None) -> list[int]:
    """Finished sends whose end is older than `older_than`, not compacted yet, with no row still in flight."""
    cutoff = (now or utcnow()) - older_than
    in_flight = batches.open_work()
    return list(session.scalars(
        select(Send.id).where(Send.status.in_(FINISHED), Send.compacted_at.is_(None),
                              func.coalesce(Send.finished_at, Send.created_at) < cutoff, ~in_flight)
        .order_by(Send.id)))


def store_figures(session: Session, send_id: int) -> bool:
    """Freeze the send's counters, figures and report on it and mark it compacted, in the caller's transaction.
    False if the send changed meanwhile (resumed, or already compacted): then nothing is stored."""
    send = session.get(Send, send_id, with_for_update=True)
    if send is None or send.compacted_at is not None or send.status not in FINISHED:
        return False
    report = send_report(session, send_id)
    send.figures = {"counters": send_counters(session, send_id), "figures": send_figures(session, send_id),
                    "report": report}
    send.compacted_at = utcnow()
    return True


def delete_rows(send_id: int, chunk: int = CHUNK) -> int:
    """Delete a compacted send's rows, `chunk` per transaction. Refuses a send that is not compacted: its rows
    are its only figures."""
    deleted = 0
    while True:
        with session_scope() as session:
            if session.scalar(select(Send.compacted_at).where(Send.id == send_id)) is None:
                raise ValueError(f"send {send_id} is not compacted; its delivery rows are its figures")
            ids = list(session.scalars(select(Delivery.id).where(Delivery.send_id == send_id)
                                       .order_by(Delivery.id).limit(chunk)))
            if not ids:
                session.execute(delete(EngagementHit).where(EngagementHit.send_id == send_id))
                session.execute(delete(SendBatch).where(SendBatch.send_id == send_id))
                session.execute(delete(SendOutcome).where(SendOutcome.send_id == send_id))
                return deleted
            first, last = ids[0], ids[-1]
            # Events keep their own copy of what they were about; they only stop pointing at the row.
            session.execute(update(ProviderEvent).where(ProviderEvent.send_id == send_id,
                                                        ProviderEvent.delivery_id.between(first, last))
                            .values(delivery_id=None))
            deleted += rowcount(session.execute(delete(_DELIVERIES).where(
                _DELIVERIES.c.send_id == send_id, _DELIVERIES.c.id.between(first, last))))


def unfinished(session: Session) -> list[int]:
    """Compacted sends that still have rows: an earlier run was interrupted between its chunks."""
    return list(session.scalars(select(Send.id).where(
        Send.compacted_at.is_not(None), exists().where(Delivery.send_id == Send.id)).order_by(Send.id)))


def compact(older_than_days: int, now: datetime | None = None, chunk: int = CHUNK) -> Compaction:
    """Compact every finished send older than `older_than_days` days, and finish interrupted ones."""
    if older_than_days < 0:
        raise ValueError("older_than_days must not be negative")
    with session_scope() as session:
        candidates = compactable(session, timedelta(days=older_than_days), now)
        leftovers = unfinished(session)
    compacted: list[int] = []
    for send_id in candidates:
        with session_scope() as session:
            if store_figures(session, send_id):
                compacted.append(send_id)
    rows = 0
    for send_id in sorted(set(compacted) | set(leftovers)):
        removed = delete_rows(send_id, chunk)
        rows += removed
        log.info("send %s compacted: %s delivery rows removed, figures kept", send_id, removed)
    return Compaction(compacted, rows)
