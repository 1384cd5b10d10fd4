"""Thin Celery tasks over worker.sends and worker.campaigns: ids in, nothing else; enqueued after the commit."""

from __future__ import annotations

import logging
import random
from typing import NoReturn

from celery import Task

from mailer import collector
from mailer.batch import TransportError
from mailer.db import session_scope
from mailer.settings import get_settings
from worker import campaigns, leases, retention, sends
from worker.app import CONTINUE_SEND_TASK, HOUSEKEEPING_QUEUE, PLAN_SEND_TASK, SEND_BATCH_TASK, SEND_QUEUE, celery_app
from worker.models import Send
from worker.ratelimit import throttle_for

log = logging.getLogger(__name__)


def enqueue_batches(send_id: int, ranges: list[tuple[int, int]], countdown: float = 0) -> None:
    for first, last in ranges:
        send_batch.apply_async(args=(send_id, first, last), countdown=countdown or None)


def _retry_after_database_error(task: Task, exc: Exception, what: str) -> NoReturn:
    """A database error is a transient fault (a restart, a failover, a dropped connection): the same task again,
    with backoff, instead of an acknowledged task that silently dropped its work."""
    if celery_app.conf.task_always_eager:
        raise exc
    delay = random.uniform(1, 2 ** min(task.request.retries + 1, 5))
    log.warning("%s: database error (%s); retrying in %.0fs", what, str(exc).splitlines()[0], delay)
    raise task.retry(exc=exc, countdown=delay, max_retries=30) from exc


@celery_app.task(name=PLAN_SEND_TASK, queue=SEND_QUEUE, bind=True)
def plan_send(self: Task, send_id: int) -> int:
    """Plan, then enqueue the pending ranges. Safe to run again: a planned send is not planned twice, and its
    ranges are enqueued again (a batch claims only pending rows)."""
    try:
        planned, ranges = sends.planned_ranges(send_id)
    except leases.TRANSIENT_DB_ERRORS as exc:
        _retry_after_database_error(self, exc, f"plan of send {send_id}")
    enqueue_batches(send_id, ranges)
    return planned


@celery_app.task(name=CONTINUE_SEND_TASK, queue=SEND_QUEUE, bind=True)
def continue_send(self: Task, send_id: int) -> int:
    """After resume or retry-failed: enqueue the pending ranges (the ledger says what is left)."""
    try:
        return resume_send(send_id)
    except leases.TRANSIENT_DB_ERRORS as exc:
        _retry_after_database_error(self, exc, f"resume of send {send_id}")


@celery_app.task(name=SEND_BATCH_TASK, queue=SEND_QUEUE, bind=True, max_retries=12)
def send_batch(self: Task, send_id: int, first_id: int, last_id: int) -> dict[str, int]:
    try:
        with session_scope() as session:
            send = session.get(Send, send_id)
            transport_name = send.transport if send else "outbox"
        with collector.paused():  # a batch's objects die with it: no collection passes over them meanwhile
            report = campaigns.send_batch(send_id, first_id, last_id, throttle=throttle_for(transport_name))
    except leases.TRANSIENT_DB_ERRORS as exc:
        _retry_after_database_error(self, exc, f"send {send_id} batch {first_id}-{last_id}")
    except TransportError as exc:
        if celery_app.conf.task_always_eager:
            raise
        delay = exc.retry_after if exc.retry_after is not None else random.uniform(1, 2 ** min(self.request.retries, 8))
        log.warning("send %s batch %s-%s: %s; retrying in %.0fs", send_id, first_id, last_id, exc, delay)
        raise self.retry(exc=exc, countdown=delay) from exc
    if report.retry and not celery_app.conf.task_always_eager:
        # Some recipients answered "try later" (4xx): the same range again, after a pause; sent rows are not
        # claimed again, so only those go out.
        send_batch.apply_async(args=(send_id, first_id, last_id),
                               countdown=min(3600, 30 * 2 ** min(self.request.retries, 6)))
    return {"sent": report.sent, "failed": report.failed, "skipped": report.skipped, "retry": report.retry}


@celery_app.task(name="worker.tasks.sweep_leases", queue=HOUSEKEEPING_QUEUE)
def sweep_leases() -> int:
    """Heal what a fault left behind: expired leases, lost batches, a lost plan, a send nobody closed."""
    lease_s = get_settings().claim_lease_s
    with session_scope() as session:
        reopened, batched_rows = leases.sweep_batches(session, lease_s)
    with session_scope() as session:
        released = leases.sweep_leases(session, lease_s)
    with session_scope() as session:
        stalled = leases.stalled_sends(session, lease_s)
    with session_scope() as session:
        unplanned = leases.unplanned_sends(session, lease_s)
    with session_scope() as session:
        closed = leases.close_idle_sends(session)
    for send_id in unplanned:
        plan_send.apply_async(args=(send_id,))
    batch_size = get_settings().batch_size
    for send_id, ranges in reopened.items():  # only these: the send's other ranges are still queued
        enqueue_batches(send_id, ranges)
    for send_id, ids in released.items():
        enqueue_batches(send_id, leases.ranges_of(ids, batch_size))
    for send_id in stalled:
        resume_send(send_id)
    abandoned = batched_rows + sum(len(ids) for ids in released.values())
    if abandoned or stalled or unplanned or closed:
        log.warning("sweeper: %s abandoned rows returned to pending (sends %s); sends re-enqueued: %s, "
                    "re-planned: %s, closed: %s", abandoned, sorted(set(released) | set(reopened)),
                    stalled, unplanned, closed)
    return abandoned


@celery_app.task(name="worker.tasks.start_due_sends", queue=HOUSEKEEPING_QUEUE)
def start_due_sends() -> list[int]:
    return sends.start_due()


@celery_app.task(name="worker.tasks.compact_ledger", queue=HOUSEKEEPING_QUEUE)
def compact_ledger() -> int:
    """Daily: finished sends older than NEWSLETTER_LEDGER_KEEP_DAYS keep their figures and lose their rows."""
    keep_days = get_settings().ledger_keep_days
    if keep_days <= 0:
        return 0
    return len(retention.compact(keep_days).sends)


@celery_app.task(name="worker.tasks.run_welcome_series", queue=HOUSEKEEPING_QUEUE)
def run_welcome_series() -> int:
    """Admit the subscribers due for a welcome step and enqueue their batches (safe to run twice at once)."""
    return sends.run_welcome_series()


def resume_send(send_id: int) -> int:
    """Enqueue a send's open ranges (its plan, if that never ran); returns how many batches were enqueued."""
    ranges = sends.open_ranges(send_id)
    enqueue_batches(send_id, ranges)
    return len(ranges)
