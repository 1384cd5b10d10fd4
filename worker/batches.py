"""A campaign's first pass as batch rows: a batch that goes out costs O(1) row writes, however many it holds.

The plan writes one `planned` delivery row per recipient (it must: events, opens and clicks land on it later) and
cuts them into `send_batches` rows of about a batch each (`cut`). From then on a planned row has no status of its
own; its batch's row is its status:

    batch open     -> the row is pending      (`claim` moves the batch, never its rows)
    batch claimed  -> the row is sending      (`renew` keeps the lease on the batch row; `release` reopens it;
                                               `sweep` reopens it when its worker died)
    batch done     -> the row is sent         (`finish`, with the provider's id for the whole call)

Only a batch's exceptions are written per recipient: skipped at the re-check (in the re-check's transaction,
which also takes them off the batch's `size`, `left`), and, in the transaction that finishes it
(worker/marking.py), failed, "try later" (back to the per-row path as `pending`), or sent with a message id of its
own (SMTP). Everything else that moves rows one by one (retries, released rows, retry-failed, the welcome series)
keeps doing so with the rows' own statuses, which never touch a planned row.

Exactly-once is the same argument as for rows: a batch is claimed by one `UPDATE .. WHERE state = 'open'`, so by
one worker; a worker killed between the provider's answer and `finish` leaves it claimed, and the sweeper reopens
it after the lease, which re-sends at most that batch.

Readers never look at `planned` alone: `status_of`, `sent_at_of` and `message_id_of` (a row's, for a page about a
few rows), `counts` (a send's counters: its batch rows' `size` by state and its exceptions), `sent_condition` (the
rows that went out, for the report) and `open_work` say what a row or a send is.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import ColumnElement, Select, and_, case, exists, func, literal, or_, select, text, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from mailer.db import id_in, rowcount, table_of, upsert_insert, utcnow
from worker.models import CLAIMED_ONLY, BatchState, Delivery, DeliveryStatus, Send, SendBatch

_BATCHES = table_of(SendBatch)
_DELIVERIES = table_of(Delivery)
Range = tuple[int, int]
T = TypeVar("T")

_RANGES = text(
    "SELECT min(id), max(id), count(*) FROM (SELECT id, (row_number() OVER (ORDER BY id) - 1) / :size AS n "
    "FROM deliveries WHERE send_id = :send AND status = :status) numbered GROUP BY n ORDER BY 1")


def row_ranges(session: Session, send_id: int, size: int, status: DeliveryStatus) -> list[tuple[int, int, int]]:
    """The send's rows in `status` in id ranges of `size` rows: (first id, last id, rows), computed in SQL (only
    the boundaries leave the database). The plan's batches, and the per-row path's ranges."""
    rows = session.execute(_RANGES, {"send": send_id, "size": max(1, size), "status": status.value})
    return [(first, last, count) for first, last, count in rows]


def cut(session: Session, send_id: int, size: int) -> int:
    """Cut the send's planned rows into batches of `size`; idempotent."""
    bounds = row_ranges(session, send_id, size, DeliveryStatus.PLANNED)
    if bounds:
        session.execute(upsert_insert(session)(SendBatch).values(
            [{"send_id": send_id, "first_id": first, "last_id": last, "state": BatchState.OPEN, "size": size}
             for first, last, size in bounds]).on_conflict_do_nothing(index_elements=["send_id", "first_id"]))
    return len(bounds)


def open_ranges(session: Session, send_id: int) -> list[Range]:
    """The ranges of the send's batches not claimed yet: what a batch task must still run."""
    return [(first, last) for first, last in session.execute(
        select(SendBatch.first_id, SendBatch.last_id).where(SendBatch.send_id == send_id,
                                                            SendBatch.state == BatchState.OPEN)
        .order_by(SendBatch.first_id))]


def claim(session: Session, send_id: int, first_id: int, last_id: int) -> tuple[int, list[int]] | None:
    """Claim the batch that is exactly this range, if it is open: (its id, its planned rows' ids), else None.

    One row written; the recipients' rows are only read."""
    batch_id = session.scalar(
        update(_BATCHES).where(_BATCHES.c.send_id == send_id, _BATCHES.c.first_id == first_id,
                               _BATCHES.c.last_id == last_id, _BATCHES.c.state == BatchState.OPEN)
        .values(state=BatchState.CLAIMED, claimed_at=utcnow()).returning(_BATCHES.c.id))
    if batch_id is None:
        return None
    ids = session.scalars(select(_DELIVERIES.c.id).where(
        _DELIVERIES.c.send_id == send_id, _DELIVERIES.c.id.between(first_id, last_id),
        _DELIVERIES.c.status == DeliveryStatus.PLANNED).order_by(_DELIVERIES.c.id)).all()
    return batch_id, list(ids)


def renew(session: Session, batch_id: int) -> None:
    session.execute(update(_BATCHES).where(_BATCHES.c.id == batch_id, _BATCHES.c.state == BatchState.CLAIMED)
                    .values(claimed_at=utcnow()))


def left(session: Session, batch_id: int, rows: int) -> None:
    """`rows` of the claimed batch's planned rows were written a status of their own (skipped at the re-check)."""
    session.execute(update(_BATCHES).where(_BATCHES.c.id == batch_id).values(size=_BATCHES.c.size - rows))


def release(session: Session, batch_id: int) -> None:
    """Claimed but not sent (a failure before the provider call, a pause): open again for a later claim."""
    session.execute(update(_BATCHES).where(_BATCHES.c.id == batch_id, _BATCHES.c.state == BatchState.CLAIMED)
                    .values(state=BatchState.OPEN, claimed_at=None))


def finish(session: Session, batch_id: int, sent: int, message_id: str | None, now: datetime) -> None:
    """The provider accepted the batch: its `sent` planned rows are sent. Called in the transaction that writes
    its exceptions, so a reader never sees the batch done with an exception still unwritten."""
    session.execute(update(_BATCHES).where(_BATCHES.c.id == batch_id)
                    .values(state=BatchState.DONE, claimed_at=None, sent_at=now, size=sent,
                            provider_message_id=message_id))


def sweep(session: Session, lease_s: int) -> tuple[dict[int, list[Range]], int]:
    """Reopen batches whose lease expired (their worker died): ({send_id: [ranges]}, the rows they hold).

    The caller applies the same guard as for rows (not within a lease of a database restart)."""
    cutoff = utcnow() - timedelta(seconds=lease_s)
    # The state as SQL text, the very predicate of the partial index (see leases.sweep_leases).
    swept = session.execute(update(_BATCHES).where(text(CLAIMED_ONLY), _BATCHES.c.claimed_at < cutoff)
                            .values(state=BatchState.OPEN, claimed_at=None)
                            .returning(_BATCHES.c.send_id, _BATCHES.c.first_id, _BATCHES.c.last_id,
                                       _BATCHES.c.size)).all()
    ranges: dict[int, list[Range]] = defaultdict(list)
    for send_id, first, last, _size in swept:
        ranges[send_id].append((first, last))
    return dict(ranges), sum(size for *_bounds, size in swept)


def held_among(subscriber_ids: Sequence[int], dialect: str) -> Select[tuple[int]]:
    """Which of these people a claimed batch holds (a query, for the caller to unite with the per-row path's):
    driven by the claimed batches (a partial index of a few rows), then each one's row in that batch's send by
    the unique (subscriber_id, send_id) index."""
    return (select(_DELIVERIES.c.subscriber_id)
            .select_from(_BATCHES.join(_DELIVERIES, and_(_DELIVERIES.c.send_id == _BATCHES.c.send_id,
                                                         _DELIVERIES.c.id.between(_BATCHES.c.first_id,
                                                                                  _BATCHES.c.last_id))))
            .where(text(f"send_batches.{CLAIMED_ONLY}"), _DELIVERIES.c.status == DeliveryStatus.PLANNED,
                   id_in(_DELIVERIES.c.subscriber_id, sorted(set(subscriber_ids)), dialect)))


# Reading: what a planned row is ---------------------------------------------------------------------------------

def _batch_of(column: InstrumentedAttribute[T]) -> Select[T]:
    """`column` of the batch holding the (correlated) `Delivery` row if it is planned: the send's batch with the
    greatest first_id not above the row's id, found by one backward probe of the unique (send_id, first_id)."""
    return (select(column).where(SendBatch.send_id == Delivery.send_id, SendBatch.first_id <= Delivery.id)
            .order_by(SendBatch.first_id.desc()).limit(1))


def status_of() -> ColumnElement[str]:
    """A `Delivery` row's status as its readers mean it: its own, or, when planned, its batch's (one index probe
    a row: for pages about a few rows, not for counting a send)."""
    state = _batch_of(SendBatch.state).scalar_subquery()
    return case((Delivery.status == DeliveryStatus.PLANNED.value,
                 case((state == BatchState.DONE.value, literal(DeliveryStatus.SENT.value)),
                      (state == BatchState.CLAIMED.value, literal(DeliveryStatus.SENDING.value)),
                      else_=literal(DeliveryStatus.PENDING.value))),
                else_=Delivery.status)


def sent_at_of() -> ColumnElement[datetime | None]:
    """When a `Delivery` row went out: its own time, or, when planned, its batch's."""
    batch_sent_at = _batch_of(SendBatch.sent_at).scalar_subquery()
    return case((Delivery.status == DeliveryStatus.PLANNED.value, batch_sent_at), else_=Delivery.sent_at)


def message_id_of() -> ColumnElement[str | None]:
    """A `Delivery` row's provider message id: its own, or, when planned, its batch's (SendGrid: one per call)."""
    batch_message = _batch_of(SendBatch.provider_message_id).scalar_subquery()
    return case((Delivery.status == DeliveryStatus.PLANNED.value, batch_message),
                else_=Delivery.provider_message_id)


SPANS_AT_MOST = 50


def sent_condition(session: Session, send_id: int) -> ColumnElement[bool]:
    """The send's `Delivery` rows that went out: sent on their own, or planned in a batch that is done.

    Planned rows outside the spans of the send's unfinished batches are exactly those in done batches (no planned
    row lies between two batches), so the condition is a few ranges, read once, not a probe per row; a finished
    send has none. A send with many scattered unfinished batches falls back to one backward index probe a row."""
    spans: list[list[int]] = []
    previous_done = True
    for first, last, state in session.execute(
            select(SendBatch.first_id, SendBatch.last_id, SendBatch.state)
            .where(SendBatch.send_id == send_id).order_by(SendBatch.first_id)):
        if BatchState(state) is BatchState.DONE:
            previous_done = True
            continue
        if previous_done:
            spans.append([first, last])
        else:
            spans[-1][1] = last
        previous_done = False
    if len(spans) <= SPANS_AT_MOST:
        planned = and_(Delivery.status == DeliveryStatus.PLANNED,
                       *(~Delivery.id.between(first, last) for first, last in spans))
    else:
        batch_state = _batch_of(SendBatch.state).scalar_subquery()
        planned = and_(Delivery.status == DeliveryStatus.PLANNED, batch_state == BatchState.DONE.value)
    return or_(Delivery.status == DeliveryStatus.SENT, planned)


OPEN_ROWS = "deliveries.status IN ('pending', 'sending')"
OPEN_BATCHES = "send_batches.state IN ('open', 'claimed')"


def open_work() -> ColumnElement[bool]:
    """The (correlated) `Send` has a row pending or in flight, of its own or by batch.

    The statuses are SQL text, not bound parameters: a prepared statement's generic plan, which knows nothing of
    how rare they are, hashed every row of a million-row send to answer this (146 ms a batch at its end)."""
    own = exists().where(Delivery.send_id == Send.id, text(OPEN_ROWS))
    batched = exists().where(SendBatch.send_id == Send.id, text(OPEN_BATCHES))
    return or_(own, batched)


def sent_by_batch(session: Session, send_id: int) -> int:
    """The send's rows that went out as part of a done batch (not counting rows sent with an id of their own)."""
    return _by_state(session, send_id).get(BatchState.DONE, 0)


def _by_state(session: Session, send_id: int) -> dict[BatchState, int]:
    return {BatchState(state): int(n) for state, n in session.execute(
        select(SendBatch.state, func.sum(SendBatch.size)).where(SendBatch.send_id == send_id)
        .group_by(SendBatch.state))}


def counts(session: Session, send_id: int) -> dict[DeliveryStatus, int]:
    """How many of the send's rows are in each status, as readers mean it: the rows' own statuses, plus the planned
    rows each batch holds (from the batch rows: the cost grows with batches, not recipients)."""
    result: dict[DeliveryStatus, int] = {status: 0 for status in DeliveryStatus if status is not DeliveryStatus.PLANNED}
    for status, n in session.execute(select(Delivery.status, func.count()).where(
            Delivery.send_id == send_id, Delivery.status.in_(result)).group_by(Delivery.status)):  # skips planned
        result[DeliveryStatus(status)] += int(n)
    as_status = {BatchState.OPEN: DeliveryStatus.PENDING, BatchState.CLAIMED: DeliveryStatus.SENDING,
                 BatchState.DONE: DeliveryStatus.SENT}
    for state, n in _by_state(session, send_id).items():
        result[as_status[state]] += n
    return result


def cancel(session: Session, send_id: int, reason: str) -> int:
    """Close every open batch of the send and skip its planned rows; returns how many rows were skipped.

    The batches are closed first, in one statement that locks them: a claim racing this one waits and then finds
    its batch no longer open. Claimed batches are in flight and finish as they would."""
    closed = session.execute(update(_BATCHES).where(_BATCHES.c.send_id == send_id,
                                                    _BATCHES.c.state == BatchState.OPEN)
                             .values(state=BatchState.DONE, size=0)
                             .returning(_BATCHES.c.first_id, _BATCHES.c.last_id)).all()
    skipped = 0
    for first, last in closed:
        skipped += rowcount(session.execute(update(_DELIVERIES).where(
            _DELIVERIES.c.send_id == send_id, _DELIVERIES.c.id.between(first, last),
            _DELIVERIES.c.status == DeliveryStatus.PLANNED).values(status=DeliveryStatus.SKIPPED, error=reason)))
    return skipped
