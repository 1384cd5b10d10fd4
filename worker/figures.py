"""Per-send figures: what was sent and what came back, from the ledger and the provider events."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailer.events import EventKind
from worker import batches
from worker.models import Delivery, DeliveryStatus, ProviderEvent
from worker.stats import compacted_figures


def send_figures(session: Session, send_id: int) -> dict[str, int]:
    stored: dict[str, int] | None = compacted_figures(session, send_id, "figures")
    if stored is not None:
        return dict(stored)
    row = session.execute(select(
        func.count().filter(Delivery.status == DeliveryStatus.SENT),  # sent with its own id; the rest by batch
        func.count(Delivery.delivered_at),
        func.count().filter(Delivery.bounce == "hard"),
        func.count().filter(Delivery.bounce == "soft"),
        func.count(Delivery.complained_at),
        func.count(Delivery.unsubscribed_at),
        func.count().filter(Delivery.opens > 0),
        func.count().filter(Delivery.clicks > 0),
    ).where(Delivery.send_id == send_id)).one()
    deferred = session.scalar(select(func.count(func.distinct(ProviderEvent.delivery_id))).where(
        ProviderEvent.send_id == send_id, ProviderEvent.kind == EventKind.DEFERRED)) or 0
    keys = ("sent", "delivered", "bounced_hard", "bounced_soft", "complained", "unsubscribed", "opened", "clicked")
    figures = dict(zip(keys, (int(v) for v in row), strict=True))
    figures["sent"] += batches.sent_by_batch(session, send_id)
    figures["deferred"] = int(deferred)
    return figures
