"""Thin Celery tasks over worker.campaigns: ids in, nothing else; enqueued after the database commit."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from functools import lru_cache

import redis
from celery import Task

from mailer.db import session_scope
from mailer.settings import get_settings
from mailer.transports.base import TransportError
from worker import campaigns
from worker.app import HOUSEKEEPING_QUEUE, SEND_QUEUE, celery_app, enqueue_after_commit
from worker.ratelimit import TokenBucket

log = logging.getLogger(__name__)


@lru_cache(maxsize=4)
def _bucket(redis_url: str, name: str, rate: float, burst: int) -> TokenBucket:
    return TokenBucket(redis.Redis.from_url(redis_url), name, rate, burst)


def throttle_for(transport: str) -> Callable[[int], None] | None:
    settings = get_settings()
    if settings.rate_per_second <= 0 or not settings.redis_url:
        return None
    bucket = _bucket(settings.redis_url, transport, settings.rate_per_second, settings.rate_burst)
    def take(count: int) -> None:
        bucket.take(count)

    return take


def enqueue_batches(send_id: int, ranges: list[tuple[int, int]], countdown: float = 0) -> None:
    for first, last in ranges:
        send_batch.apply_async(args=(send_id, first, last), countdown=countdown or None)


@celery_app.task(name="worker.tasks.plan_send", queue=SEND_QUEUE)
def plan_send(send_id: int) -> int:
    settings = get_settings()
    with session_scope() as session:
        planned = campaigns.plan_send(session, send_id)
    with session_scope() as session:
        if planned:
            campaigns.refresh_statistics(session)
        ranges = campaigns.batch_ranges(session, send_id, settings.batch_size)
    if not ranges:
        campaigns.finish_if_complete(send_id)
    enqueue_batches(send_id, ranges)
    log.info("send %s planned: %s recipients in %s batches", send_id, planned, len(ranges))
    return planned


@celery_app.task(name="worker.tasks.send_batch", queue=SEND_QUEUE, bind=True, max_retries=12)
def send_batch(self: Task, send_id: int, first_id: int, last_id: int) -> dict[str, int]:
    with session_scope() as session:
        transport = session.get(campaigns.Send, send_id)
        name = transport.transport if transport else "outbox"
    try:
        report = campaigns.send_batch(send_id, first_id, last_id, throttle=throttle_for(name))
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
    settings = get_settings()
    with session_scope() as session:
        released = campaigns.sweep_leases(session, settings.claim_lease_s)
    with session_scope() as session:
        stalled = campaigns.stalled_sends(session, settings.claim_lease_s)
    for send_id in sorted(set(released) | set(stalled)):
        resume_send(send_id)
    if released or stalled:
        log.warning("sweeper: %s abandoned rows returned to pending; sends re-enqueued: %s",
                    sum(len(ids) for ids in released.values()), sorted(set(released) | set(stalled)))
    return sum(len(ids) for ids in released.values())


@celery_app.task(name="worker.tasks.start_due_sends", queue=HOUSEKEEPING_QUEUE)
def start_due_sends() -> list[int]:
    started = []
    for send_id in _due():
        with session_scope() as session:
            try:
                campaigns.start_send(session, send_id)
            except campaigns.CampaignError:
                continue  # started by another beat tick or paused meanwhile
            enqueue_after_commit(session, plan_send, send_id)
        started.append(send_id)
    return started


def _due() -> list[int]:
    with session_scope() as session:
        return campaigns.due_sends(session)


def resume_send(send_id: int) -> None:
    """After resume or retry-failed: enqueue the pending ranges (the ledger says what is left)."""
    with session_scope() as session:
        ranges = campaigns.pending_ranges(session, send_id)
    enqueue_batches(send_id, ranges)
    if not ranges:
        campaigns.finish_if_complete(send_id)
