"""Provider events on the ledger side: store them once, find the delivery they are about, record the outcome on
it, hand the subscriber consequences to subscribers.policy, and let auto-pause look at the send."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from mailer.db import session_scope, table_of, upsert_insert, utcnow
from mailer.events import MAX_ROW_ID, DeliveryEvent, EventKind
from mailer.settings import TransportName, get_settings
from subscribers import policy
from subscribers.models import Subscriber
from worker import autopause, batches, engagement
from worker.autopause import check_send
from worker.models import Delivery, ProviderEvent, Send, SendStatus

log = logging.getLogger(__name__)


def store(session: Session, events: Sequence[DeliveryEvent]) -> int:
    """Insert events, ignoring ones already stored (providers retry, and deliver at least once)."""
    if not events:
        return 0
    insert = upsert_insert(session)
    now = utcnow()
    rows = [{"provider": e.provider, "provider_event_id": e.event_id, "kind": e.kind.value, "email": e.email,
             "send_id": None, "delivery_id": None, "payload": e.payload | {"_reason": e.reason, "_status": e.status,
                                                                         "_delivery_id": e.delivery_id,
                                                                         "_send_id": e.send_id,
                                                                         "_message_id": e.message_id,
                                                                         "_machine_open": e.machine_open},
             "occurred_at": e.occurred_at, "received_at": now,
             # Refused at the edge: stored for a person, already done with, never applied.
             "processed_at": now if e.rejected else None, "error": e.rejected} for e in events]
    table = table_of(ProviderEvent)
    statement = insert(table).on_conflict_do_nothing(
        index_elements=["provider", "provider_event_id"]).returning(table.c.id)
    return len(session.connection().execute(statement, rows).scalars().all())


def _row_id(value: object) -> int:
    """An id read back from a stored payload, checked again: rows stored before validation existed included."""
    number = int(str(value))
    if not 1 <= number <= MAX_ROW_ID:
        raise ValueError(f"id {value!r} is out of range")
    return number


def _correlate(session: Session, event: ProviderEvent) -> Delivery | None:
    """custom_args / VERP delivery id (checked against send and address), else message id + address."""
    payload = event.payload or {}
    email = event.email
    delivery_id, send_id, message_id = payload.get("_delivery_id"), payload.get("_send_id"), payload.get("_message_id")
    if delivery_id:
        delivery = session.get(Delivery, _row_id(delivery_id))
        if delivery is not None and (send_id is None or delivery.send_id == _row_id(send_id)):
            owner = session.get(Subscriber, delivery.subscriber_id)
            if owner is not None and (email is None or owner.email == email):
                return delivery
    if message_id and email:
        return session.scalar(select(Delivery).join(Subscriber, Subscriber.id == Delivery.subscriber_id)
                              .where(batches.message_id_of() == str(message_id), Subscriber.email == email))
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


@dataclass(frozen=True)
class _Known:
    """What a delivery's row said before an event, to count only what the event newly made known."""

    outcome: bool
    bounce: str | None
    complained: bool

    @classmethod
    def of(cls, delivery: Delivery) -> _Known:
        return cls(delivery.delivered_at is not None or delivery.bounce is not None, delivery.bounce,
                   delivery.complained_at is not None)


def _count_for_autopause(session: Session, send: Send, before: _Known, after: _Known) -> None:
    if send.status is not SendStatus.RUNNING:
        return  # a paused send starts a fresh window when resumed; late events must not refill the old one
    # SMTP counted its outcomes when the receiving server answered (worker.refusals); a later DSN adds its bounce.
    newly_known = after.outcome and not before.outcome and send.transport != TransportName.SMTP
    autopause.count(session, send.id, outcomes=int(newly_known),
                    hard_bounces=int(after.bounce == "hard" and before.bounce != "hard"),
                    complaints=int(after.complained and not before.complained))


def _apply_one(session: Session, event_id: int) -> int | None:
    """Apply one stored event in the caller's transaction; returns the send it counted for, if any."""
    query = select(ProviderEvent).where(ProviderEvent.id == event_id, ProviderEvent.processed_at.is_(None))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)  # two appliers never apply the same event twice
    event = session.scalar(query)
    if event is None:
        return None
    delivery = _correlate(session, event)
    if delivery is None and event.provider == "smtp":
        # A bounce is proven by its VERP address alone, and that proof is a delivery: without one, nobody is touched.
        event.processed_at, event.error = utcnow(), "no delivery matches this bounce; nobody suppressed"
        return None
    send = session.get(Send, delivery.send_id) if delivery is not None else None
    before = _Known.of(delivery) if delivery is not None else None
    if delivery is not None:
        event.delivery_id, event.send_id = delivery.id, delivery.send_id
        _record_on_delivery(session, delivery, event)
    session.flush()
    actions = policy.apply(session, policy.Outcome(
        event_kind=event.kind, email=event.email,
        subscriber_id=delivery.subscriber_id if delivery else None, list_id=send.list_id if send else None,
        provider_event_id=event.id, reason=str((event.payload or {}).get("_reason", "")),
        soft_bounces_in_window=_soft_bounces(session, event.email) if event.email else 0))
    event.processed_at = utcnow()
    if actions:
        log.info("event %s (%s %s): %s", event.id, event.kind.value, event.email, "; ".join(actions))
    if delivery is None or send is None or before is None:
        return None
    session.flush()
    _count_for_autopause(session, send, before, _Known.of(delivery))  # last: see autopause.count
    return send.id


def _reject(event_id: int, error: BaseException) -> None:
    """Mark an event that could not be applied: kept with its error for a person, and out of the way of the rest."""
    text = f"{error.__class__.__name__}: {error}"[:2000]
    with session_scope() as session:
        session.execute(update(ProviderEvent).where(ProviderEvent.id == event_id, ProviderEvent.processed_at.is_(None))
                        .values(processed_at=utcnow(), error=text))


def _connection_trouble(error: BaseException) -> bool:
    """The database, not the event, failed: stop and leave the events pending for the next run."""
    return isinstance(error, OperationalError | InterfaceError) or (
        isinstance(error, DBAPIError) and error.connection_invalidated)


def apply_pending(limit: int = 5000) -> int:
    """Apply stored, unprocessed events in arrival order, each in its own transaction. An event that fails is
    marked rejected with its error and the others go on: one bad event must never hold up a complaint."""
    with session_scope() as session:
        ids = session.scalars(select(ProviderEvent.id).where(ProviderEvent.processed_at.is_(None))
                              .order_by(ProviderEvent.id).limit(limit)).all()
    sends: set[int] = set()
    for event_id in ids:
        try:
            with session_scope() as session:
                send_id = _apply_one(session, event_id)
        except Exception as exc:
            if _connection_trouble(exc):
                raise
            log.exception("provider event %s rejected", event_id)
            _reject(event_id, exc)
            continue
        if send_id is not None:
            sends.add(send_id)
    for send_id in sends:
        with session_scope() as session:
            reason = check_send(session, send_id)
        if reason:
            log.warning("send %s: %s", send_id, reason)
    return len(ids)


def mark_unprocessed_for_retry(ids: Sequence[int]) -> None:
    with session_scope() as session:
        session.execute(update(ProviderEvent).where(ProviderEvent.id.in_(ids)).values(processed_at=None))
