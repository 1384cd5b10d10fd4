"""A person's rights over their data, and our duty not to keep what we may not: export (GDPR art. 15), erasure
(art. 17), and forgetting sign-ups that were never confirmed (an unconfirmed address is not consent).

Like `service`, every function takes the caller's session and never commits.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from mailer.db import email_hash, utcnow
from mailer.settings import get_settings
from subscribers.models import (
    ConsentEvent,
    ConsentKind,
    ConsentSource,
    MailingList,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
)
from subscribers.service import ServiceError, is_suppressed, record_consent, suppress, unsubscribe


def export_subscriber(session: Session, subscriber_id: int) -> dict[str, Any]:
    """Everything we hold about one person (GDPR art. 15), as plain JSON-able data."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        raise ServiceError("This subscriber no longer exists.")
    lists = {m.id: m.slug for m in session.scalars(select(MailingList))}
    subscriptions = session.scalars(select(Subscription).where(Subscription.subscriber_id == subscriber_id))
    events = session.scalars(select(ConsentEvent).where(ConsentEvent.subscriber_id == subscriber_id)
                             .order_by(ConsentEvent.at, ConsentEvent.id))
    return {
        "email": subscriber.email,
        "name": subscriber.name,
        "attributes": subscriber.attributes,
        "created_at": subscriber.created_at.isoformat(),
        "subscriptions": [{"list": lists.get(s.list_id), "status": s.status.value, "source": s.source,
                           "created_at": s.created_at.isoformat(),
                           "confirmed_at": s.confirmed_at.isoformat() if s.confirmed_at else None,
                           "unsubscribed_at": s.unsubscribed_at.isoformat() if s.unsubscribed_at else None}
                          for s in subscriptions],
        "consent_events": [{"kind": e.kind.value, "at": e.at.isoformat(), "list": lists.get(e.list_id or 0),
                            "source": e.source.value, "ip": e.ip, "user_agent": e.user_agent, "detail": e.detail}
                           for e in events],
        "suppressed": is_suppressed(session, subscriber.email),
    }


def erase(session: Session, subscriber_id: int, *, source: ConsentSource) -> None:
    """Right to erasure: drop the address and everything personal, keep only a hash that refuses re-imports.

    The row stays (anonymised) so the delivery ledger and per-send figures remain consistent.
    """
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None or subscriber.erased_at is not None:
        return
    address = subscriber.email
    unsubscribe(session, subscriber_id, None, source=source)
    suppress(session, address, SuppressionReason.ERASED, source=source, note="erased on request")
    session.execute(update(Suppression).where(Suppression.email_hash == email_hash(address)).values(email=None))
    session.execute(update(ConsentEvent).where(ConsentEvent.subscriber_id == subscriber_id)
                    .values(ip=None, user_agent=None))
    subscriber.email = f"erased-{subscriber_id}@erased.invalid"
    subscriber.name = ""
    subscriber.attributes = {}
    subscriber.erased_at = utcnow()
    record_consent(session, subscriber_id, None, ConsentKind.ERASED, source=source)
    session.flush()


def purge_pending(session: Session, older_than_days: int | None = None) -> int:
    """Forget sign-ups never confirmed: an unconfirmed address is not consent, so we should not keep it."""
    days = get_settings().pending_purge_days if older_than_days is None else older_than_days
    cutoff = utcnow() - timedelta(days=days)
    stale = session.execute(select(Subscription.id, Subscription.subscriber_id, Subscription.list_id)
                            .where(Subscription.status == SubscriptionStatus.PENDING,
                                   Subscription.created_at < cutoff)).all()
    for _id, subscriber_id, list_id in stale:
        record_consent(session, subscriber_id, list_id, ConsentKind.PURGED, source=ConsentSource.SYSTEM,
                       detail={"after_days": days})
    if stale:
        session.execute(delete(Subscription).where(Subscription.id.in_([row[0] for row in stale])))
    return len(stale)
