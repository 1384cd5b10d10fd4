"""Tasks for subscribers: the confirmation and welcome emails, and the purge of never-confirmed sign-ups."""

from __future__ import annotations

import logging

from celery import Task

from mailer.batch import TransportError
from mailer.db import session_scope
from mailer.transports import get_transport
from subscribers.privacy import purge_pending as purge_pending_subscriptions
from subscribers.service import NotificationKind
from worker import welcome
from worker.app import HOUSEKEEPING_QUEUE, celery_app

log = logging.getLogger(__name__)


@celery_app.task(name="worker.subscriber_tasks.send_notification", queue=HOUSEKEEPING_QUEUE, bind=True,
                 max_retries=8, acks_late=True)
def send_notification(self: Task, kind: str, subscription_id: int) -> str:
    # Imported here: the render stack (MJML, premailer, lxml: ~40 MB) then loads only in a process that sends a
    # confirmation, not in every pool process of a sending worker.
    from subscribers.emails import NotificationSkipped, build_notification  # noqa: PLC0415

    with session_scope() as session:
        if kind == NotificationKind.WELCOME and welcome.series_welcomes(session, subscription_id):
            log.info("welcome for subscription %s: the list's welcome series sends it", subscription_id)
            return "skipped"
        try:
            content, recipient = build_notification(session, NotificationKind(kind), subscription_id)
        except NotificationSkipped as exc:
            log.info("notification %s for subscription %s skipped: %s", kind, subscription_id, exc)
            return "skipped"
    transport = get_transport()
    try:
        results = transport.send(content, [recipient])
    except TransportError as exc:
        if exc.retryable and not celery_app.conf.task_always_eager:
            raise self.retry(exc=exc, countdown=min(600, 15 * 2 ** self.request.retries)) from exc
        raise
    finally:
        transport.close()
    result = results[0]
    if not result.ok:
        if result.retryable and not celery_app.conf.task_always_eager:
            raise self.retry(countdown=min(600, 15 * 2 ** self.request.retries))
        log.warning("notification %s for subscription %s failed: %s", kind, subscription_id, result.error)
        return "failed"
    return "sent"


@celery_app.task(name="worker.subscriber_tasks.send_notifications", queue=HOUSEKEEPING_QUEUE, acks_late=True)
def send_notifications(kind: str, subscription_ids: list[int]) -> int:
    """The emails of a group of sign-ups that committed together (newsletter/web/intake.py), enqueued by the web as
    one message instead of one each: a publish costs the web ~0.4 ms. Each becomes its own send_notification task
    here, with its own retries."""
    for subscription_id in subscription_ids:
        send_notification.apply_async(args=(kind, subscription_id))
    return len(subscription_ids)


@celery_app.task(name="worker.subscriber_tasks.purge_pending", queue=HOUSEKEEPING_QUEUE)
def purge_pending() -> int:
    with session_scope() as session:
        return purge_pending_subscriptions(session)
