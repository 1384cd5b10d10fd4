"""Tasks for what comes back: apply stored provider events, and fetch DSNs from the bounce mailbox."""

from __future__ import annotations

from mailer.db import session_scope
from mailer.settings import get_settings
from worker import engagement, events
from worker.app import HOUSEKEEPING_QUEUE, celery_app
from worker.bounces import fetch_imap


@celery_app.task(name="worker.event_tasks.apply_events", queue=HOUSEKEEPING_QUEUE)
def apply_events() -> int:
    return events.apply_pending()


@celery_app.task(name="worker.event_tasks.classify_engagement", queue=HOUSEKEEPING_QUEUE)
def classify_engagement() -> int:
    with session_scope() as session:
        return engagement.classify_pending(session)


@celery_app.task(name="worker.event_tasks.purge_engagement", queue=HOUSEKEEPING_QUEUE)
def purge_engagement() -> int:
    with session_scope() as session:
        return engagement.purge_raw(session, get_settings().engagement_raw_days)


@celery_app.task(name="worker.event_tasks.fetch_bounces", queue=HOUSEKEEPING_QUEUE)
def fetch_bounces() -> int:
    if not get_settings().imap_host:
        return 0
    return fetch_imap().events
