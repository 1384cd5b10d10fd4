"""Confirmation and welcome emails leave after the change that asked for them commits, from every front end.

The subscriber service decides *that* someone must be told (its outcomes carry `notify` items); this is the one
place that turns those items into tasks, so the public form, the API and the CLI cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.orm import Session

from subscribers.service import Notify
from worker.app import enqueue_after_commit
from worker.subscriber_tasks import send_notification


def notify_after_commit(session: Session, items: Iterable[Notify]) -> None:
    for item in items:
        enqueue_after_commit(session, send_notification, item.kind, item.subscription_id)
