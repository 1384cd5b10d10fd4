"""Counters of a send, derived from the ledger (never kept as separate numbers that could drift)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from worker.models import Delivery, DeliveryStatus


def send_counters(session: Session, send_id: int) -> dict[str, int]:
    rows = session.execute(select(Delivery.status, func.count()).where(Delivery.send_id == send_id)
                           .group_by(Delivery.status)).all()
    counts = {status.value: 0 for status in DeliveryStatus}
    counts.update({DeliveryStatus(status).value: n for status, n in rows})
    counts["planned"] = sum(counts[s.value] for s in DeliveryStatus)
    counts["done"] = counts["sent"] + counts["failed"] + counts["skipped"]
    return counts
