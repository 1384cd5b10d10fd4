"""Confirmation and welcome emails leave after the change that asked for them commits, from every front end.

The subscriber service decides *that* someone must be told (its outcomes carry `notify` items); this is the one
place that turns those items into tasks, so the public form, the API and the CLI cannot drift apart.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy.orm import Session

from subscribers.service import Notify
from worker.app import run_after_commit
from worker.subscriber_tasks import send_notification, send_notifications


def notify_after_commit(session: Session, items: Iterable[Notify]) -> None:
    """Enqueue once the session's change commits (`notify_now`, then)."""
    waiting = list(items)
    if waiting:
        run_after_commit(session, lambda: notify_now(waiting))


def notify_now(items: Iterable[Notify]) -> None:
    """Enqueue, for changes already committed, one message per kind of email: one email is its own
    `send_notification` task; a group of sign-ups that committed together (newsletter/web/intake.py) costs one
    publish, not one each."""
    by_kind: dict[str, list[int]] = defaultdict(list)
    for item in items:
        by_kind[item.kind].append(item.subscription_id)
    for kind, subscription_ids in by_kind.items():
        if len(subscription_ids) == 1:
            send_notification.apply_async(args=(kind, subscription_ids[0]))
        else:  # the logs' summary of its arguments, given: Celery's own repr walks the list, ~0.1 ms an id
            send_notifications.apply_async(args=(kind, subscription_ids),
                                           argsrepr=f"({kind!r}, <{len(subscription_ids)} subscriptions>)")
