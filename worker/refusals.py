"""What a receiving SMTP server said at send time, on its way to the same consequences as a bounce.

A permanent refusal at RCPT ("550 5.1.1 user unknown") is the same evidence as a hard-bounce DSN, only earlier: it
becomes the same stored event and goes through the same policy (subscribers.policy), so the address is suppressed
and the consent trail names the event. Every final answer (accepted or refused) is also an outcome known for
auto-pause: SMTP learns a message's fate at once, where SendGrid's comes back later as an event.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from mailer.batch import Result
from mailer.events.dsn import refusal_event
from worker import autopause, events
from worker.app import celery_app, is_inline, run_after_commit

APPLY_EVENTS_TASK = "worker.event_tasks.apply_events"  # by name: the ledger need not import the task modules


def record(session: Session, send_id: int, results: Sequence[Result]) -> int:
    """In the transaction that marks the batch: store the refusals as events (applied after the commit) and count
    the answered recipients. Returns how many refusals were stored."""
    refusals = [refusal_event(r.recipient.delivery_id, r.recipient.email, r.error or "")
                for r in results if r.refused_address and r.recipient.delivery_id is not None]
    stored = events.store(session, refusals) if refusals else 0
    if stored:
        run_after_commit(session, _apply_soon)
    autopause.count(session, send_id, outcomes=sum(1 for r in results if r.answered))  # last: see count()
    return stored


def _apply_soon() -> None:
    """Without a broker the events are applied here, after the commit; with one, by a worker."""
    if is_inline():
        events.apply_pending()
    else:
        celery_app.send_task(APPLY_EVENTS_TASK)
