"""Recording what the provider answered for a batch: the batch's row, and a row per recipient only for exceptions.

Split from worker/campaigns.py (plan, claim, re-check, send): this is the write that must not be lost once the
provider has accepted a batch, so campaigns runs it under `leases.until_stored`. Outcomes are written in bulk,
never one statement per recipient. For a batch of the first pass (worker/batches.py), the recipients the provider
accepted under one id for the whole call (SendGrid) are not written at all: the batch's row, marked done with that
id, says they were sent. What differs from that is written per row: failures, "try later", and recipients with a
message id of their own (SMTP: the id is theirs, and the fallback that matches provider events looks it up).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, text, update
from sqlalchemy.orm import Session

from mailer.batch import Result
from mailer.db import id_in, session_scope, table_of, utcnow
from worker import batches, refusals
from worker.models import Delivery, DeliveryStatus

_DELIVERIES = table_of(Delivery)  # Core table: executemany of per-row UPDATEs without the ORM's bulk rules


def mark(results: Sequence[Result], max_attempts: int, *, send_id: int | None = None,
         batch_id: int | None = None) -> tuple[int, int, int]:
    """Record outcomes in bulk: one UPDATE per provider message id for accepted rows (SendGrid gives one id per
    call), one UPDATE for per-recipient ids (SMTP), executemany for failures. Returns (sent, failed, retry).

    With `batch_id`, the largest group accepted under one id is the batch's own, written once on its row.

    With `send_id`, what the receiving server answered goes to worker.refusals in the same transaction: a refused
    address is never marked failed without its bounce being on record."""
    now = utcnow()
    by_message: dict[str | None, list[int]] = defaultdict(list)
    failed: list[dict[str, Any]] = []
    retry: list[int] = []
    for result in results:
        delivery_id = result.recipient.delivery_id
        assert delivery_id is not None
        if result.ok:
            by_message[result.message_id].append(delivery_id)
        elif result.retryable:
            retry.append(delivery_id)
        else:
            failed.append({"b_id": delivery_id, "b_error": (result.error or "failed")[:2000]})
    singles = {ids[0]: message_id for message_id, ids in by_message.items() if len(ids) == 1}
    shared = [message_id for message_id, ids in by_message.items() if len(ids) > 1]
    batch_message = max(shared, key=lambda m: len(by_message[m])) if batch_id is not None and shared else None
    with session_scope() as session:
        dialect = session.get_bind().dialect.name
        for message_id in shared:
            ids = by_message[message_id]
            if batch_id is None or message_id != batch_message:  # SendGrid: one X-Message-Id for the whole call
                session.execute(update(_DELIVERIES).where(id_in(_DELIVERIES.c.id, ids, dialect))
                                .values(status=DeliveryStatus.SENT, sent_at=now, claimed_at=None,
                                        provider_message_id=message_id, error=None))
        if singles:  # SMTP: one Message-ID per recipient
            _mark_each_sent(session, singles, now)
        if failed:
            session.connection().execute(
                update(_DELIVERIES).where(_DELIVERIES.c.id == bindparam("b_id"))
                .values(status=DeliveryStatus.FAILED, error=bindparam("b_error"), claimed_at=None), failed)
        if retry:  # an attempt is a temporary failure the provider reported, nothing else
            session.execute(update(_DELIVERIES).where(id_in(_DELIVERIES.c.id, retry, dialect))
                            .values(attempts=_DELIVERIES.c.attempts + 1))
            session.execute(update(_DELIVERIES).where(id_in(_DELIVERIES.c.id, retry, dialect),
                                                      _DELIVERIES.c.attempts >= max_attempts)
                            .values(status=DeliveryStatus.FAILED, error="temporary failures, gave up",
                                    claimed_at=None))
            session.execute(update(_DELIVERIES).where(  # a batch's planned row leaves its batch for the per-row path
                id_in(_DELIVERIES.c.id, retry, dialect),
                _DELIVERIES.c.status.in_([DeliveryStatus.SENDING, DeliveryStatus.PLANNED]))
                            .values(status=DeliveryStatus.PENDING, claimed_at=None))
        if batch_id is not None:
            batches.finish(session, batch_id, len(by_message[batch_message]) if shared else 0, batch_message, now)
        if send_id is not None:
            refusals.record(session, send_id, results)
    return sum(len(v) for v in by_message.values()), len(failed), len(retry)


_MARK_EACH_SENT_PG = text(
    "UPDATE deliveries SET status = :sent, sent_at = :now, claimed_at = NULL, error = NULL, "
    "provider_message_id = marks.message_id "
    "FROM unnest(CAST(:ids AS bigint[]), CAST(:message_ids AS text[])) AS marks(id, message_id) "
    "WHERE deliveries.id = marks.id")


def _mark_each_sent(session: Session, message_ids: dict[int, str | None], now: datetime) -> None:
    """Rows that each have their own message id: one statement over two arrays on PostgreSQL, instead of a
    thousand single-row UPDATEs; SQLite, in-process, takes the executemany."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_MARK_EACH_SENT_PG, {"sent": DeliveryStatus.SENT.value, "now": now,
                                             "ids": list(message_ids), "message_ids": list(message_ids.values())})
        return
    session.connection().execute(
        update(_DELIVERIES).where(_DELIVERIES.c.id == bindparam("b_id"))
        .values(status=DeliveryStatus.SENT, sent_at=now, claimed_at=None, provider_message_id=bindparam("b_message"),
                error=None),
        [{"b_id": delivery_id, "b_message": message_id} for delivery_id, message_id in message_ids.items()])
