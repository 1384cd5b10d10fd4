"""Leases on claimed batches and rows, and the sweeper that heals sends after a worker, the queue or the database
failed.

A claimed batch row (worker/batches.py), or a claimed row of the per-row path, carries `claimed_at`, its lease.
A live worker renews it (`Heartbeat`) for as long as it holds the batch, however slow the provider is; a dead
worker stops renewing, so its rows come back after one short lease.
That lets the lease be tens of seconds instead of "longer than the slowest batch could ever take".

The sweeper (a beat task, every third of a lease) then:
- reopens expired batches and returns expired rows to `pending` (`sweep_batches`, `sweep_leases`), except in the
  first lease after a database restart, when no worker has had the chance to renew yet;
- finds running sends whose queued batches were lost (`stalled_sends`) or whose plan task was (`unplanned_sends`);
- closes running sends that have nothing left pending or in flight (`close_idle_sends`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import timedelta
from types import TracebackType
from typing import TypeVar

from sqlalchemy import ColumnElement, exists, func, select, text, update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from mailer.db import id_in, session_scope, table_of, utcnow
from worker import batches
from worker.models import SENDING_ONLY, BatchState, Delivery, DeliveryStatus, Send, SendBatch, SendKind, SendStatus

log = logging.getLogger(__name__)

_DELIVERIES = table_of(Delivery)
# What a database restart or a dropped connection raises; a constraint or programming error is not retried.
TRANSIENT_DB_ERRORS = (OperationalError, InterfaceError)
T = TypeVar("T")


def until_stored(action: Callable[[], T], what: str, limit_s: float) -> T:
    """Run a database write until it succeeds, for up to `limit_s`.

    Used where giving up costs more than waiting: the provider already accepted a batch, and forgetting that
    would send it again once the rows' lease expires. Each failure is logged; after `limit_s` the error is raised.
    """
    deadline = time.monotonic() + limit_s
    attempt = 0
    while True:
        try:
            return action()
        except TRANSIENT_DB_ERRORS as exc:
            attempt += 1
            delay = min(2.0, 0.1 * 2 ** attempt)
            if time.monotonic() + delay > deadline:
                log.error("%s: the database stayed unavailable for %.0fs, giving up: %s", what, limit_s, exc)
                raise
            log.warning("%s: database unavailable (%s); retry %d in %.1fs",
                        what, str(exc).splitlines()[0], attempt, delay)
            time.sleep(delay)


class Heartbeat:
    """Renews the lease of one batch (its row, or its rows on the per-row path) every third of a lease while the
    batch is held.

    A thread, not the transport's progress: the provider call is one blocking request, and that request is exactly
    what can outlast a lease. The thread dies with its process, which is the point: a dead worker stops renewing.
    """

    def __init__(self, ids: Sequence[int], lease_s: float, batch_id: int | None = None) -> None:
        self.ids = list(ids)
        self.batch_id = batch_id
        self.interval = max(0.2, lease_s / 3)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-heartbeat", daemon=True)
        self.renewals = 0

    def __enter__(self) -> Heartbeat:
        if self.ids:
            self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.renew()
            except TRANSIENT_DB_ERRORS as exc:  # the next beat tries again; the sweeper waits out a restart
                log.warning("lease renewal of %s rows failed: %s", len(self.ids), str(exc).splitlines()[0])

    def renew(self) -> None:
        with session_scope() as session:
            if self.batch_id is not None:
                batches.renew(session, self.batch_id)
            else:
                session.execute(update(_DELIVERIES)
                                .where(id_in(_DELIVERIES.c.id, self.ids, session.get_bind().dialect.name),
                                       _DELIVERIES.c.status == DeliveryStatus.SENDING)
                                .values(claimed_at=utcnow()))
        self.renewals += 1


def _database_uptime_s(session: Session) -> float | None:
    if session.get_bind().dialect.name != "postgresql":
        return None
    return float(session.scalar(text("SELECT EXTRACT(EPOCH FROM now() - pg_postmaster_start_time())")) or 0)


def _just_restarted(session: Session, lease_s: int) -> bool:
    """Within a lease of a database restart every worker's renewals failed while it was down, so an old
    `claimed_at` then says nothing about whether its worker is alive."""
    uptime = _database_uptime_s(session)
    return uptime is not None and uptime < lease_s


def sweep_batches(session: Session, lease_s: int) -> tuple[dict[int, list[tuple[int, int]]], int]:
    """Reopen batches whose lease expired (their worker died): ({send_id: [ranges]}, rows in them)."""
    if _just_restarted(session, lease_s):
        return {}, 0
    return batches.sweep(session, lease_s)


def sweep_leases(session: Session, lease_s: int) -> dict[int, list[int]]:
    """Return rows of the per-row path whose lease expired (their worker died) to pending; {send_id: [ids]}."""
    if _just_restarted(session, lease_s):
        return {}
    cutoff = utcnow() - timedelta(seconds=lease_s)
    # The status as SQL text, the very predicate of the partial index on claim times: a bound parameter would
    # leave a cached generic plan unable to prove it may use that index.
    rows = session.execute(update(Delivery)
                           .where(text(SENDING_ONLY), Delivery.claimed_at < cutoff)
                           .values(status=DeliveryStatus.PENDING, claimed_at=None)
                           .returning(Delivery.send_id, Delivery.id)).all()
    released: dict[int, list[int]] = defaultdict(list)
    for send_id, delivery_id in rows:
        released[send_id].append(delivery_id)
    return dict(released)


def ranges_of(ids: Sequence[int], size: int) -> list[tuple[int, int]]:
    """Id ranges of at most `size` of the given rows: released rows are re-enqueued alone, not with every pending
    range of their send (those are still queued, and each extra copy is one more claim that finds nothing)."""
    ordered = sorted(ids)
    return [(chunk[0], chunk[-1]) for chunk in (ordered[i:i + size] for i in range(0, len(ordered), size))]


def _has(status: DeliveryStatus) -> ColumnElement[bool]:
    """The send (correlated to the outer `sends` row) has a row in `status`, its own or by batch: index probes,
    not a count."""
    state = {DeliveryStatus.PENDING: BatchState.OPEN, DeliveryStatus.SENDING: BatchState.CLAIMED}[status]
    # As SQL text, not bound parameters (see batches.open_work: a generic plan hashed a whole ledger for this).
    return exists().where(Delivery.send_id == Send.id, text(f"deliveries.status = '{status.value}'")) | exists().where(
        SendBatch.send_id == Send.id, text(f"send_batches.state = '{state.value}'"))


def stalled_sends(session: Session, lease_s: int) -> list[int]:
    """Running sends with pending rows, nothing in flight and no ledger activity for a lease: their queued batches
    were lost (a broker restarted without persistence, a worker died holding prefetched messages). Re-enqueueing
    is safe because a batch only ever claims rows that are still pending.

    The activity aggregate reads a send's whole ledger, so it only runs for sends with nothing in flight, which a
    healthy send almost never is.
    """
    cutoff = utcnow() - timedelta(seconds=lease_s)
    candidates = session.scalars(select(Send.id).where(
        Send.status == SendStatus.RUNNING, _has(DeliveryStatus.PENDING),
        ~_has(DeliveryStatus.SENDING))).all()
    stalled = []
    for send_id in candidates:
        rows = session.scalar(
            select(func.max(func.coalesce(Delivery.sent_at, Delivery.claimed_at, Send.started_at)))
            .join(Send, Send.id == Delivery.send_id).where(Delivery.send_id == send_id))
        batched = session.scalar(select(func.max(func.coalesce(SendBatch.sent_at, SendBatch.claimed_at)))
                                 .where(SendBatch.send_id == send_id))
        moments = [m if m.tzinfo is not None else m.replace(tzinfo=cutoff.tzinfo)  # SQLite: naive UTC
                   for m in (rows, batched) if m is not None]
        if not moments or max(moments) < cutoff:
            stalled.append(send_id)
    return stalled


def unplanned_sends(session: Session, lease_s: int) -> list[int]:
    """Running sends whose plan never ran (its task was lost with the queue) a lease after they started.

    A plan in progress holds its send's row lock: SKIP LOCKED leaves it alone rather than planning it twice.
    """
    query = select(Send.id).where(Send.status == SendStatus.RUNNING, Send.html.is_(None),
                                  Send.started_at < utcnow() - timedelta(seconds=lease_s))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(session.scalars(query))


def close_idle_sends(session: Session) -> list[int]:
    """Running, planned sends with nothing pending or in flight are done.

    The last batch closes its send itself; this catches the send whose last worker died after marking its rows
    and before closing it, which would otherwise stay `running` for ever. A welcome step's send stays running: it
    takes new recipients as their delay passes (worker/welcome.py).
    """
    closed = session.execute(
        update(Send).where(Send.status == SendStatus.RUNNING, Send.html.is_not(None),
                           Send.kind == SendKind.CAMPAIGN.value,
                           ~batches.open_work())
        .values(status=SendStatus.DONE, finished_at=utcnow()).returning(Send.id)).scalars().all()
    return sorted(closed)
