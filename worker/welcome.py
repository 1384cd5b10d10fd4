"""The welcome series on the ledger: a list's steps, who is due for one, and the delays staff type.

Each step (worker.models.WelcomeStep) owns one send of kind 'welcome' that stays running. A run (beat, every 30 s,
through `sends.run_welcome_series`) admits, per step, one INSERT .. SELECT of `pending` rows for the subscriptions
that are due: confirmed (and unsuppressed, unerased: the plan's own audience definition), opted in to the welcome
(`Subscription.welcome`), confirmed at or after the step's `eligible_from`, and confirmed at least the step's delay
ago. ON CONFLICT DO NOTHING on the ledger's unique (send, subscriber) makes a repeated or concurrent run, and a
re-confirmation, admit nobody twice; the rows then go through the normal batch (claim, re-check, send, mark).

Creating, removing and running steps is worker/sends.py's job (the one place that creates or steers a send);
this module only reads and writes the ledger for them.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from sqlalchemy import literal, select, update
from sqlalchemy.orm import Session

from mailer.db import as_utc, upsert_insert, utcnow
from subscribers import audience
from subscribers.models import Subscriber, Subscription
from worker.models import Delivery, DeliveryStatus, Send, SendKind, SendStatus, WelcomeStep

MAX_STEPS = 5
MAX_DELAY = timedelta(days=365)
# A confirmation is stamped before its transaction commits: a run that moved the window past its time must still
# see it if it commits a little later. Each run looks back this far behind the last window, at the price of a few
# index probes that find their row already there.
LATE_COMMIT_MARGIN = timedelta(hours=1)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DELAY = re.compile(r"([0-9]{1,6})\s*([smhdw])")
MAX_DELAY_TEXT = 20


class DelayError(ValueError):
    """A delay that cannot be read; the message says what is accepted."""


def parse_delay(raw: str) -> int:
    """Seconds from '0' (at once), '30m', '12h', '2d' or '1w' (one number and one unit; up to a year)."""
    value = (raw or "").strip().lower()
    if len(value) > MAX_DELAY_TEXT:
        raise DelayError("That delay is too long to be one; use a number and a unit, e.g. 0, 30m, 12h, 2d, 1w.")
    if value == "0":
        return 0
    match = _DELAY.fullmatch(value)
    if match is None:
        raise DelayError(f"Cannot read the delay {value!r}: use 0 (at once) or a number and a unit "
                         "(s, m, h, d, w), e.g. 30m, 12h, 2d, 1w.")
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds > MAX_DELAY.total_seconds():
        raise DelayError(f"A welcome email can wait at most {MAX_DELAY.days} days after confirmation.")
    return seconds


def format_delay(seconds: int) -> str:
    """The largest unit that divides the delay: '0' for at once, else e.g. '2d', '90m'."""
    if seconds == 0:
        return "0"
    for unit in ("w", "d", "h", "m"):
        if seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"


def steps_of(session: Session, list_id: int) -> list[WelcomeStep]:
    """A list's steps in the order they are mailed (delay, then age): position n is the n-th of this list."""
    return list(session.scalars(select(WelcomeStep).where(WelcomeStep.list_id == list_id)
                                .order_by(WelcomeStep.delay_seconds, WelcomeStep.id)))


def has_series(session: Session, list_id: int) -> bool:
    """A list with a series is welcomed by it: the fixed-text welcome email is then not sent."""
    return session.scalar(select(WelcomeStep.id).where(WelcomeStep.list_id == list_id).limit(1)) is not None


def series_welcomes(session: Session, subscription_id: int) -> bool:
    """Whether the subscription's list has a series, which then replaces the fixed-text welcome email."""
    list_id = session.scalar(select(Subscription.list_id).where(Subscription.id == subscription_id))
    return list_id is not None and has_series(session, list_id)


def running_steps(session: Session) -> list[tuple[int, int]]:
    """(step id, send id) of every step whose send is running (a paused one admits nobody until resumed)."""
    return [(step_id, send_id) for step_id, send_id in session.execute(
        select(WelcomeStep.id, WelcomeStep.send_id).join(Send, Send.id == WelcomeStep.send_id)
        .where(Send.status == SendStatus.RUNNING, Send.kind == SendKind.WELCOME.value).order_by(WelcomeStep.id))]


def admit_due(session: Session, step_id: int, now: datetime | None = None) -> list[int]:
    """Write a pending row for every subscription now due for this step; returns the new rows' ids.

    On PostgreSQL the step's row is locked (SKIP LOCKED): a concurrent run leaves a step being admitted alone
    instead of waiting for it. Without that lock (SQLite, or a race past it) the unique key still admits each
    subscriber once.
    """
    now = now or utcnow()
    query = select(WelcomeStep).where(WelcomeStep.id == step_id)
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        query = query.with_for_update(skip_locked=True)
    step = session.scalar(query)
    if step is None:
        return []
    send = session.get(Send, step.send_id)
    if send is None or send.status is not SendStatus.RUNNING:
        return []
    cutoff = now - timedelta(seconds=step.delay_seconds)
    lower = as_utc(step.eligible_from)
    if step.covered_until is not None:
        lower = max(lower, as_utc(step.covered_until) - LATE_COMMIT_MARGIN)
    if cutoff < lower:
        return []
    due = (select(literal(send.id), Subscriber.id, literal(DeliveryStatus.PENDING.value), literal(0))
           .select_from(Subscription).join(Subscriber, Subscriber.id == Subscription.subscriber_id)
           .where(*audience.conditions(step.list_id), Subscription.welcome.is_(True),
                  Subscription.confirmed_at >= lower, Subscription.confirmed_at <= cutoff)
           .order_by(Subscriber.id))
    insert = upsert_insert(session)(Delivery).from_select(["send_id", "subscriber_id", "status", "attempts"], due)
    ids = sorted(session.execute(insert.on_conflict_do_nothing(index_elements=["subscriber_id", "send_id"])
                                 .returning(Delivery.id)).scalars())
    session.execute(update(WelcomeStep).where(WelcomeStep.id == step_id)
                    .where((WelcomeStep.covered_until.is_(None)) | (WelcomeStep.covered_until < cutoff))
                    .values(covered_until=cutoff).execution_options(synchronize_session=False))
    if ids:
        session.execute(update(Send).where(Send.id == send.id).values(planned=Send.planned + len(ids))
                        .execution_options(synchronize_session=False))
    return ids
