"""The Celery app, configured from Settings. With no broker URL it runs tasks inline (the embedded default).

Reliability choices: acks late + reject on worker lost so a killed worker's task is redelivered; prefetch 1 so a
batch is never parked behind a slow one; a visibility timeout longer than the longest batch so Redis does not hand
a running task to a second worker; JSON payloads only (ids), so a task never carries personal data or pickles.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import Celery
from celery.signals import worker_process_init
from kombu import pools
from sqlalchemy import event
from sqlalchemy.orm import Session

from mailer.collector import freeze_loaded
from mailer.settings import get_settings
from worker import shutdown

SEND_QUEUE = "send"
HOUSEKEEPING_QUEUE = "housekeeping"
TASK_MODULES = ["worker.tasks", "worker.subscriber_tasks", "worker.event_tasks"]
# Tasks enqueued by name (worker/sends.py), so a producer need not import the module that defines them.
PLAN_SEND_TASK = "worker.tasks.plan_send"
CONTINUE_SEND_TASK = "worker.tasks.continue_send"
SEND_BATCH_TASK = "worker.tasks.send_batch"


def make_celery() -> Celery:
    settings = get_settings()
    app = Celery("newsletter", include=TASK_MODULES)
    inline = not settings.broker_url
    app.conf.update(
        broker_url=settings.broker_url or "memory://",
        result_backend=None,
        task_ignore_result=True,
        task_always_eager=inline,
        task_eager_propagates=True,
        task_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": max(3600, settings.claim_lease_s * 2)},
        broker_connection_retry_on_startup=True,
        task_default_queue=HOUSEKEEPING_QUEUE,
        task_routes={name: {"queue": SEND_QUEUE} for name in (SEND_BATCH_TASK, PLAN_SEND_TASK, CONTINUE_SEND_TASK)},
        timezone="UTC",
        enable_utc=True,
        worker_hijack_root_logger=False,
        beat_schedule={
            # Every third of a lease: a dead worker's rows are back within about 1.3 leases.
            "sweep-leases": {"task": "worker.tasks.sweep_leases", "schedule": max(5.0, settings.claim_lease_s / 3)},
            "start-due-sends": {"task": "worker.tasks.start_due_sends", "schedule": 30.0},
            "welcome-series": {"task": "worker.tasks.run_welcome_series", "schedule": 30.0},
            "purge-pending": {"task": "worker.subscriber_tasks.purge_pending", "schedule": 6 * 3600.0},
            "apply-events": {"task": "worker.event_tasks.apply_events", "schedule": 60.0},
            "fetch-bounces": {"task": "worker.event_tasks.fetch_bounces", "schedule": 300.0},
            "classify-engagement": {"task": "worker.event_tasks.classify_engagement", "schedule": 15.0},
            "purge-engagement": {"task": "worker.event_tasks.purge_engagement", "schedule": 24 * 3600.0},
            "compact-ledger": {"task": "worker.tasks.compact_ledger", "schedule": 24 * 3600.0},
        },
    )
    return app


celery_app = make_celery()


def reconfigure() -> None:
    """Re-read Settings into the existing app (tests and the CLI change the environment after import)."""
    fresh = make_celery()
    celery_app.conf.update(fresh.conf)
    # Connection pools are built lazily from the broker URL in force at first use; drop them so the next
    # publish connects to the broker now configured.

    if celery_app._pool is not None:
        celery_app._pool.force_close_all()
        celery_app._pool = None
    celery_app.amqp._producer_pool = None
    pools.reset()  # type: ignore[no-untyped-call]


def is_inline() -> bool:
    """No broker: tasks run in the calling process (the embedded default)."""
    return bool(celery_app.conf.task_always_eager)


def run_after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run once the session's transaction commits (at once if none is open): work that follows a database change
    must never look for a row that is not there yet, nor run for a change that was rolled back."""

    def _run(_session: Session) -> None:
        callback()

    if session.in_transaction():
        event.listen(session, "after_commit", _run, once=True)
    else:
        callback()


def enqueue_after_commit(session: Session, task: Any, *args: Any, **kwargs: Any) -> None:
    """Enqueue a task once the session's transaction commits; inline mode runs it right after, in this process."""
    run_after_commit(session, lambda: task.apply_async(args=args, kwargs=kwargs))


def _pool_process_started(**_kwargs: Any) -> None:
    """A pool process finishes recording the batch the provider holds before it obeys SIGTERM; what it has loaded
    (the task modules, the app) is moved out of the garbage collector's sight (mailer/collector.py)."""
    shutdown.install()
    freeze_loaded()


worker_process_init.connect(_pool_process_started, weak=False)
