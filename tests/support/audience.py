"""Test audiences created the fast way (bulk SQL), and the example issue stored as a send would store it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from mailer.db import session_scope, utcnow
from mailer.store import save_issue
from subscribers import mailing_lists, service
from subscribers.models import ConsentSource, Subscriber, Subscription, SubscriptionStatus, SuppressionReason
from worker import batches, campaigns, sends
from worker.models import Delivery, DeliveryStatus, Send, SendBatch
from worker.stats import send_counters

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "issues" / "2023-09-22-digital-digest.md"


@dataclass
class Audience:
    list_id: int
    issue_id: int
    confirmed: list[str]
    others: list[str]  # pending, unsubscribed, suppressed: must receive nothing


def make_audience(confirmed: int, *, pending: int = 3, unsubscribed: int = 3, suppressed: int = 3,
                  slug: str = "weekly") -> Audience:
    now = utcnow()
    with session_scope() as session:
        mailing_list = mailing_lists.create_list(session, slug, "Digital Digest Weekly")
        issue = save_issue(session, EXAMPLE.read_text(), filename=str(EXAMPLE))
        groups = [("c", confirmed, SubscriptionStatus.CONFIRMED), ("p", pending, SubscriptionStatus.PENDING),
                  ("u", unsubscribed, SubscriptionStatus.UNSUBSCRIBED), ("s", suppressed, SubscriptionStatus.CONFIRMED)]
        emails: dict[str, list[str]] = {}
        for prefix, count, _status in groups:
            emails[prefix] = [f"{prefix}{i}@example.com" for i in range(count)]
        all_rows = [{"email": e, "name": f"Reader {e.split('@')[0]}", "attributes": {}, "created_at": now}
                    for prefix, _count, _status in groups for e in emails[prefix]]
        if all_rows:
            session.execute(insert(Subscriber), all_rows)
        ids = dict(session.query(Subscriber.email, Subscriber.id).all())  # type: ignore[arg-type]
        subscriptions = [{"subscriber_id": ids[e], "list_id": mailing_list.id, "status": status, "source": "test",
                          "created_at": now, "confirmed_at": now}
                         for prefix, _count, status in groups for e in emails[prefix]]
        if subscriptions:
            session.execute(insert(Subscription), subscriptions)
        for address in emails["s"]:
            service.suppress(session, address, SuppressionReason.HARD_BOUNCE, source=ConsentSource.ADMIN)
        return Audience(mailing_list.id, issue.id, emails["c"], emails["p"] + emails["u"] + emails["s"])


def counters(send_id: int) -> dict[str, int]:
    """A send's ledger counters, read in a fresh transaction (what another process would see)."""

    with session_scope() as session:
        return send_counters(session, send_id)


def send_status(send_id: int):
    with session_scope() as session:
        send = session.get(Send, send_id)
        assert send is not None
        return send.status


def started_send(session: Session, issue_id: int, list_id: int, **options: object) -> int:
    """A running send that nothing has planned or enqueued yet, so a test can drive the ledger step by step.

    Created through worker.sends as every front end does (scheduled, so nothing is dispatched), then moved to
    running by the ledger's own transition, which is what sends.start does before it hands the send on.
    """
    send = sends.create(session, issue_id, list_id,
                             sends.SendOptions(scheduled_at=utcnow() + timedelta(days=365), **options))  # type: ignore[arg-type]
    campaigns.start_send(session, send.id)
    return send.id


# The ledger keeps plain ids (migration 0018): joins between a person and their deliveries name their condition.
ROW_OF_PERSON = Delivery.subscriber_id == Subscriber.id


def claim_and_die(session: Session, send_id: int, first: int, last: int) -> list[int]:
    """What a worker killed after its claim leaves: the batch claimed, its lease never renewed; the rows' ids."""
    claimed = batches.claim(session, send_id, first, last)
    assert claimed is not None, "the range is not an open batch"
    return claimed[1]


def age_leases(session: Session, by: timedelta) -> None:
    """Every lease (batches' and rows') taken `by` ago: what the sweeper sees after that much silence."""
    session.execute(update(SendBatch).where(SendBatch.claimed_at.is_not(None)).values(claimed_at=utcnow() - by))
    session.execute(update(Delivery).where(Delivery.claimed_at.is_not(None)).values(claimed_at=utcnow() - by))


def delivery_status(session: Session, send_id: int, subscriber_id: int) -> DeliveryStatus | None:
    """A delivery's status as readers mean it (its own, or its batch's)."""
    status = session.scalar(select(batches.status_of()).where(Delivery.send_id == send_id,
                                                              Delivery.subscriber_id == subscriber_id))
    return DeliveryStatus(status) if status is not None else None
