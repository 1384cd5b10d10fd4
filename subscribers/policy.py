"""The one place that turns what came back from providers into consequences for a subscriber.

Every decision is recorded as a consent event naming the provider event, so "why was I removed?" has an answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer.events import EventKind
from mailer.settings import get_settings
from subscribers import service
from subscribers.models import ConsentKind, ConsentSource, Subscriber, SuppressionReason

# SendGrid drop reasons that mean "never send here again"; other drops (e.g. content) are recorded only.
SUPPRESSING_DROPS = {"bounced address", "spam reporting address", "unsubscribed address", "invalid"}


@dataclass(frozen=True)
class Outcome:
    event_kind: EventKind
    email: str | None
    subscriber_id: int | None
    list_id: int | None
    provider_event_id: int
    reason: str = ""
    soft_bounces_in_window: int = 0


def apply(session: Session, outcome: Outcome) -> list[str]:
    """Apply one event's consequences; returns what was done (for logs and tests)."""
    if not outcome.email:
        return []
    settings = get_settings()
    subscriber_id = outcome.subscriber_id or session.scalar(
        select(Subscriber.id).where(Subscriber.email == outcome.email))
    kind, ref = outcome.event_kind, outcome.provider_event_id
    done: list[str] = []

    def consent(kind_: ConsentKind, **detail: object) -> None:
        if subscriber_id is not None:
            service.record_consent(session, subscriber_id, outcome.list_id, kind_, source=ConsentSource.PROVIDER,
                                   detail={"event": kind.value, "reason": outcome.reason, **detail},
                                   provider_event_id=ref)

    if kind is EventKind.BOUNCE:
        service.suppress(session, outcome.email, SuppressionReason.HARD_BOUNCE, source=ConsentSource.PROVIDER,
                         note=outcome.reason[:200], provider_event_id=ref)
        consent(ConsentKind.BOUNCED, bounce="hard")
        done.append("suppressed: hard bounce")
    elif kind is EventKind.BLOCKED:
        consent(ConsentKind.BOUNCED, bounce="soft", count=outcome.soft_bounces_in_window)
        done.append("soft bounce counted")
        if outcome.soft_bounces_in_window >= settings.soft_bounce_limit:
            service.suppress(session, outcome.email, SuppressionReason.SOFT_BOUNCE_LIMIT,
                             source=ConsentSource.PROVIDER, provider_event_id=ref,
                             note=f"{outcome.soft_bounces_in_window} soft bounces in "
                                  f"{settings.soft_bounce_window_days} days")
            done.append("suppressed: soft bounce limit")
    elif kind is EventKind.DROPPED:
        if outcome.reason.strip().lower() in SUPPRESSING_DROPS:
            service.suppress(session, outcome.email, SuppressionReason.DROPPED, source=ConsentSource.PROVIDER,
                             note=outcome.reason[:200], provider_event_id=ref)
            done.append("suppressed: dropped")
    elif kind is EventKind.SPAMREPORT:
        service.suppress(session, outcome.email, SuppressionReason.COMPLAINT, source=ConsentSource.PROVIDER,
                         note="marked as spam", provider_event_id=ref)
        consent(ConsentKind.COMPLAINED)
        if subscriber_id is not None:
            service.unsubscribe(session, subscriber_id, None, source=ConsentSource.PROVIDER,
                                detail={"event": "spamreport"}, provider_event_id=ref)
        done.append("suppressed and unsubscribed everywhere: complaint")
    elif kind in (EventKind.UNSUBSCRIBE, EventKind.GROUP_UNSUBSCRIBE):
        if subscriber_id is not None:
            service.unsubscribe(session, subscriber_id, outcome.list_id, source=ConsentSource.PROVIDER,
                                detail={"event": kind.value}, provider_event_id=ref)
            done.append("unsubscribed")
    elif kind is EventKind.GROUP_RESUBSCRIBE and subscriber_id is not None and outcome.list_id is not None:
        try:
            service.resubscribe(session, subscriber_id, outcome.list_id, source=ConsentSource.PROVIDER,
                                provider_event_id=ref)
            done.append("resubscribed")
        except service.NotSubscribed:
            done.append("not resubscribed: never on that list")
    return done
