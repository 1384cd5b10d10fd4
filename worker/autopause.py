"""Auto-pause: a running send stops itself when what comes back says the list or the content is hurting us.

Mailbox providers judge senders on bounce and complaint rates (Gmail/Yahoo: complaints under 0.3%); a send that
keeps going through a bad list burns the domain's reputation for every later send.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailer.settings import get_settings
from worker.models import Delivery, DeliveryStatus, Send, SendStatus


def rates(session: Session, send_id: int, window: int) -> tuple[int, float, float]:
    """(sample size, hard-bounce rate, complaint rate) over the send's most recent `window` sent deliveries."""
    recent = (select(Delivery.bounce, Delivery.complained_at)
              .where(Delivery.send_id == send_id, Delivery.status == DeliveryStatus.SENT)
              .order_by(Delivery.sent_at.desc(), Delivery.id.desc()).limit(window).subquery())
    total, hard, complaints = session.execute(select(
        func.count(), func.count().filter(recent.c.bounce == "hard"),
        func.count(recent.c.complained_at))).one()
    if not total:
        return 0, 0.0, 0.0
    return int(total), hard / total, complaints / total


def check_send(session: Session, send_id: int) -> str | None:
    """Pause the send if a threshold is passed; returns the reason when it paused."""
    settings = get_settings()
    send = session.get(Send, send_id)
    if send is None or send.status is not SendStatus.RUNNING:
        return None
    sample, hard, complaints = rates(session, send_id, settings.autopause_window)
    if sample < settings.autopause_min_sample:
        return None
    reason = None
    if hard > settings.autopause_hard_bounce_rate:
        reason = (f"Auto-paused: hard-bounce rate {hard:.1%} over the last {sample} deliveries "
                  f"(limit {settings.autopause_hard_bounce_rate:.1%}). Check the list before resuming.")
    elif complaints > settings.autopause_complaint_rate:
        reason = (f"Auto-paused: complaint rate {complaints:.2%} over the last {sample} deliveries "
                  f"(limit {settings.autopause_complaint_rate:.2%}).")
    if reason:
        send.status, send.status_reason = SendStatus.PAUSED, reason
    return reason
