"""How a send did, for people: delivered, human opens and clicks with rates, machines beside them, per link, over
the first 72 hours and by mailbox domain, with bounces, complaints and unsubscribes. One function feeds the admin,
the API, the CSV and `newsletter sends report`.

Definitions (also in docs/operations.md): *delivered* is sent and not bounced; a message counts as *opened by a
person* if a person opened it or clicked in it (a click proves the open when images are blocked); rates divide
unique people by delivered; click-to-open divides unique clickers by unique openers.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import Session

from mailer.db import as_utc
from subscribers.models import Subscriber
from subscribers.segments import email_domain_of
from worker import batches
from worker.engagement import EngagementKind, Verdict
from worker.models import Delivery, EngagementHit, Send, SendLink
from worker.stats import compacted_figures

TIMELINE_HOURS = 72
TOP_DOMAINS = 10


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def send_report(session: Session, send_id: int) -> dict[str, Any] | None:
    send = session.get(Send, send_id)
    if send is None:
        return None
    stored: dict[str, Any] | None = compacted_figures(session, send_id, "report")
    if stored is not None:  # compacted: the report as it was then, with the send's status as it is now
        return stored | {"status": send.status.value}
    sent_rows = (Delivery.send_id == send_id, batches.sent_condition(session, send_id))
    opened = or_(Delivery.opens > 0, Delivery.clicks > 0)
    row = session.execute(select(
        func.count(), func.count().filter(Delivery.bounce.is_(None)),
        func.coalesce(func.sum(Delivery.opens), 0), func.coalesce(func.sum(Delivery.machine_opens), 0),
        func.count().filter(opened),
        func.coalesce(func.sum(Delivery.clicks), 0), func.coalesce(func.sum(Delivery.machine_clicks), 0),
        func.count().filter(Delivery.clicks > 0),
        func.count().filter(Delivery.bounce == "hard"), func.count().filter(Delivery.bounce == "soft"),
        func.count(Delivery.complained_at), func.count(Delivery.unsubscribed_at),
    ).where(*sent_rows)).one()
    (sent, delivered, opens_h, opens_m, unique_open, clicks_h, clicks_m, unique_click,
     hard, soft, complaints, unsubscribes) = (int(v) for v in row)
    links = [{"position": position, "url": url, "human": human, "machine": machine, "unique_human": unique}
             for position, url, human, machine, unique in session.execute(
                 select(SendLink.position, SendLink.url, SendLink.human, SendLink.machine, SendLink.unique_human)
                 .where(SendLink.send_id == send_id).order_by(SendLink.position))]
    return {
        "send_id": send_id, "status": send.status.value, "sent": sent, "delivered": delivered,
        "tracking": {"opens": send.track_opens, "clicks": send.track_clicks},
        "opens": {"human": opens_h, "machine": opens_m, "unique_human": unique_open,
                  "rate": _rate(unique_open, delivered)},
        "clicks": {"human": clicks_h, "machine": clicks_m, "unique_human": unique_click,
                   "rate": _rate(unique_click, delivered), "click_to_open": _rate(unique_click, unique_open)},
        "bounces": {"hard": hard, "soft": soft}, "complaints": complaints, "unsubscribes": unsubscribes,
        "links": links,
        "timeline": _timeline(session, send),
        "domains": _domains(session, send_id),
    }


def _timeline(session: Session, send: Send) -> list[dict[str, int]]:
    """Human opens and clicks per hour over the first 72 hours (from the raw hits, while they are kept)."""
    hours = [{"hour": h, "opens": 0, "clicks": 0} for h in range(TIMELINE_HOURS)]
    start = send.started_at
    if start is None:
        return hours
    for kind, at in session.execute(select(EngagementHit.kind, EngagementHit.at).where(
            EngagementHit.send_id == send.id, EngagementHit.verdict == Verdict.HUMAN.value,
            EngagementHit.at < start + timedelta(hours=TIMELINE_HOURS))):
        hour = int((as_utc(at) - as_utc(start)).total_seconds() // 3600)
        if 0 <= hour < TIMELINE_HOURS:
            hours[hour]["opens" if kind == EngagementKind.OPEN.value else "clicks"] += 1
    return hours


def _domains(session: Session, send_id: int) -> list[dict[str, Any]]:
    """The biggest mailbox domains of the send with their delivered, people who opened, and people who clicked."""
    domain = email_domain_of(Subscriber.email)
    rows = session.execute(
        select(domain.label("domain"), func.count(),
               func.sum(case((or_(Delivery.opens > 0, Delivery.clicks > 0), 1), else_=0)),
               func.sum(case((Delivery.clicks > 0, 1), else_=0)))
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Delivery.send_id == send_id, batches.sent_condition(session, send_id), Delivery.bounce.is_(None))
        .group_by(domain).order_by(func.count().desc()).limit(TOP_DOMAINS)).all()
    out: list[dict[str, Any]] = []
    for name, delivered, opened, clicked in rows:
        out.append({"domain": name or "(erased)", "delivered": int(delivered), "unique_human_opens": int(opened or 0),
                    "unique_human_clicks": int(clicked or 0)})
    return out


def report_csv_rows(report: dict[str, Any]) -> list[list[str]]:
    """The report as CSV rows: the figures, then the per-link table (written through subscribers.csvsafe)."""
    rows: list[list[str]] = [["figure", "value"]]
    flat: dict[str, Any] = defaultdict(str)
    for key in ("sent", "delivered", "complaints", "unsubscribes"):
        flat[key] = report[key]
    for group in ("opens", "clicks", "bounces"):
        for key, value in report[group].items():
            flat[f"{group}_{key}"] = value
    rows += [[key, str(value)] for key, value in flat.items()]
    rows += [[], ["link", "url", "human", "machine", "unique_human"]]
    rows += [[str(link["position"]), link["url"], str(link["human"]), str(link["machine"]),
              str(link["unique_human"])] for link in report["links"]]
    return rows
