"""Provider events on the ledger side: store them once, find the delivery they are about, record the outcome on
it, hand the subscriber consequences to subscribers.policy, and let auto-pause look at the send."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from mailer.db import session_scope, table_of, utcnow
from mailer.events import DeliveryEvent, EventKind
from mailer.settings import get_settings
from subscribers import policy
from subscribers.models import Subscriber
from worker import engagement
from worker.autopause import check_send
from worker.models import Delivery, ProviderEvent, Send

log = logging.getLogger(__name__)


def store(session: Session, events: Sequence[DeliveryEvent]) -> int:
    """Insert events, ignoring ones already stored (providers retry, and deliver at least once)."""
    if not events:
        return 0
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    rows = [{"provider": e.provider, "provider_event_id": e.event_id, "kind": e.kind.value, "email": e.email,
             "send_id": None, "delivery_id": None, "payload": e.payload | {"_reason": e.reason, "_status": e.status,
                                                                         "_delivery_id": e.delivery_id,
                                                                         "_send_id": e.send_id,
                                                                         "_message_id": e.message_id,
                                                                         "_machine_open": e.machine_open},
             "occurred_at": e.occurred_at, "received_at": utcnow()} for e in events]
    table = table_of(ProviderEvent)
    statement = insert(table).on_conflict_do_nothing(
        index_elements=["provider", "provider_event_id"]).returning(table.c.id)
    return len(session.connection().execute(statement, rows).scalars().all())


def _correlate(session: Session, event: ProviderEvent) -> Delivery | None:
    """custom_args / VERP delivery id (checked against send and address), else message id + address."""
    payload = event.payload or {}
    email = event.email
    delivery_id, send_id, message_id = payload.get("_delivery_id"), payload.get("_send_id"), payload.get("_message_id")
    if delivery_id:
        delivery = session.get(Delivery, int(delivery_id))
        if delivery is not None and (send_id is None or delivery.send_id == int(send_id)):
            owner = session.get(Subscriber, delivery.subscriber_id)
            if owner is not None and (email is None or owner.email == email):
                return delivery
    if message_id and email:
        return session.scalar(select(Delivery).join(Subscriber, Subscriber.id == Delivery.subscriber_id)
                              .where(Delivery.provider_message_id == message_id, Subscriber.email == email))
    return None


def _record_on_delivery(session: Session, delivery: Delivery, event: ProviderEvent) -> None:
    kind, at = event.kind, event.occurred_at
    if kind is EventKind.DELIVERED:
        delivery.delivered_at = delivery.delivered_at or at
    elif kind is EventKind.BOUNCE:
        delivery.bounce = "hard"
    elif kind is EventKind.BLOCKED:
        delivery.bounce = delivery.bounce or "soft"
    elif kind is EventKind.SPAMREPORT:
        delivery.complained_at = delivery.complained_at or at
    elif kind in (EventKind.UNSUBSCRIBE, EventKind.GROUP_UNSUBSCRIBE):
        delivery.unsubscribed_at = delivery.unsubscribed_at or at
    elif kind in (EventKind.OPEN, EventKind.CLICK):
        # Classified and counted with our own opens and clicks (worker/engagement.py), never counted twice.
        payload = event.payload or {}
        engagement.from_provider(session, delivery, engagement.EngagementKind(kind.value), at, payload,
                                 machine_hint=bool(payload.get("_machine_open")))


def _soft_bounces(session: Session, email: str) -> int:
    since = utcnow() - timedelta(days=get_settings().soft_bounce_window_days)
    return int(session.scalar(select(func.count()).select_from(ProviderEvent).where(
        ProviderEvent.email == email, ProviderEvent.kind == EventKind.BLOCKED,
        ProviderEvent.occurred_at >= since)) or 0)


def apply_pending(limit: int = 5000) -> int:
    """Apply stored, unprocessed events in arrival order; each event in its own transaction."""
    with session_scope() as session:
        ids = session.scalars(select(ProviderEvent.id).where(ProviderEvent.processed_at.is_(None))
                              .order_by(ProviderEvent.id).limit(limit)).all()
    sends: set[int] = set()
    for event_id in ids:
        with session_scope() as session:
            event = session.get(ProviderEvent, event_id)
            if event is None or event.processed_at is not None:
                continue
            delivery = _correlate(session, event)
            list_id = None
            if delivery is not None:
                event.delivery_id, event.send_id = delivery.id, delivery.send_id
                _record_on_delivery(session, delivery, event)
                send = session.get(Send, delivery.send_id)
                list_id = send.list_id if send else None
                sends.add(delivery.send_id)
            session.flush()
            actions = policy.apply(session, policy.Outcome(
                event_kind=event.kind, email=event.email,
                subscriber_id=delivery.subscriber_id if delivery else None, list_id=list_id,
                provider_event_id=event.id, reason=str((event.payload or {}).get("_reason", "")),
                soft_bounces_in_window=_soft_bounces(session, event.email) if event.email else 0))
            event.processed_at = utcnow()
            if actions:
                log.info("event %s (%s %s): %s", event.id, event.kind.value, event.email, "; ".join(actions))
    for send_id in sends:
        with session_scope() as session:
            check_send(session, send_id)
    return len(ids)


def mark_unprocessed_for_retry(ids: Sequence[int]) -> None:
    with session_scope() as session:
        session.execute(update(ProviderEvent).where(ProviderEvent.id.in_(ids)).values(processed_at=None))
