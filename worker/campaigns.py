"""The sending engine as plain functions over the delivery ledger; Celery tasks (worker/tasks.py) only call these.

Exactly-once rests on the ledger, not on the queue:
- plan: one INSERT .. SELECT writes a `planned` row per eligible recipient (idempotent: unique (send, subscriber))
  and cuts them into batch rows (worker/batches.py), whose state is their rows' status;
- claim: one UPDATE moves a batch's row from open to claimed; rows of the per-row path (retries, released rows,
  the welcome series) are claimed by one UPDATE from `pending` to `sending`. Either is claimed by one worker only,
  so running a batch twice (a redelivered task) sends nobody twice;
- mark: a batch becomes done (its rows sent) only after the transport accepted it, with its exceptions written
  per row in the same transaction. A worker killed between "accepted" and "marked" leaves its batch claimed (or
  its rows `sending`); the sweeper reopens it after the lease, which re-sends at most that one in-flight batch.
  That window is the only source of duplicates, and it is bounded by the batch size. A live worker renews its
  lease (worker/leases.py), so the lease can be short; a database that fails after the provider accepted a batch
  is waited for, so its restart re-sends nothing.
- re-check: eligibility is read again after any wait (rate limit) and just before the provider call, the last
  moment the batch can still change. Someone who leaves after that read is still in flight; the page that tells
  them they have left answers only once their batch has been handed over (`await_handover`), so nobody is told
  "unsubscribed" and then mailed.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass

from sqlalchemy import and_, func, literal, select, text, union, update
from sqlalchemy.orm import Session

from mailer.batch import Content, Result, TransportError
from mailer.db import get_engine, id_in, rowcount, session_scope, table_of, upsert_insert, utcnow
from mailer.merge_tags import Slot, field_names
from mailer.models import IssueRecord
from mailer.settings import Settings, TransportName, get_settings
from mailer.transports import get_transport
from mailer.transports.base import Transport
from subscribers import audience, fields
from subscribers.models import MailingList, Subscriber, Subscription, SubscriptionStatus
from subscribers.service import suppressed_among
from worker import batches, engagement
from worker.content import Row, content_for, freeze, recipients_for, slots_of, web_url
from worker.leases import Heartbeat, until_stored
from worker.leases import stalled_sends as stalled_sends  # the sweeper's queries live with the leases
from worker.leases import sweep_leases as sweep_leases
from worker.marking import mark
from worker.models import Delivery, DeliveryStatus, Send, SendKind, SendStatus
from worker.shutdown import ambiguous_window

log = logging.getLogger(__name__)

_DELIVERIES = table_of(Delivery)  # Core table: executemany of per-row UPDATEs without the ORM's bulk rules
Enqueue = Callable[[int, int, int, float], None]  # (send_id, first_id, last_id, countdown_s)


class CampaignError(ValueError):
    """A send request the rules refuse; the message is for the person who asked."""


@dataclass(frozen=True)
class BatchReport:
    claimed: int = 0
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    retry: int = 0
    paused: bool = False


# Creating and controlling sends -------------------------------------------------------------------------------

def _send(session: Session, send_id: int, *, lock: bool = False) -> Send:
    query = select(Send).where(Send.id == send_id)
    if lock and session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    send = session.scalar(query)
    if send is None:
        raise CampaignError(f"No send {send_id}.")
    return send


def start_send(session: Session, send_id: int) -> Send:
    """Move a draft or scheduled send to running; the caller enqueues plan_send after commit."""
    send = _send(session, send_id, lock=True)
    if send.status not in (SendStatus.DRAFT, SendStatus.SCHEDULED):
        raise CampaignError(f"Send {send_id} is {send.status.value}; only a draft or scheduled send can start.")
    send.status, send.started_at, send.status_reason = SendStatus.RUNNING, utcnow(), ""
    return send


def pause(session: Session, send_id: int, reason: str = "") -> Send:
    """Stop taking new batches at once; rows not yet claimed stay pending for resume."""
    send = _send(session, send_id, lock=True)
    if send.status in (SendStatus.RUNNING, SendStatus.SCHEDULED):
        send.status, send.status_reason = SendStatus.PAUSED, reason or "paused by staff"
    elif send.status is not SendStatus.PAUSED:
        raise CampaignError(f"Send {send_id} is {send.status.value} and cannot be paused.")
    return send


def resume(session: Session, send_id: int) -> Send:
    """Continue a paused send. A running one is accepted as it is: resuming it re-enqueues its open ranges, which
    is how an operator recovers a send whose queue was lost (a batch only claims pending rows, so it is safe)."""
    send = _send(session, send_id, lock=True)
    if send.status not in (SendStatus.PAUSED, SendStatus.RUNNING):
        raise CampaignError(f"Send {send_id} is {send.status.value}; only a paused or running send can resume.")
    send.status, send.status_reason = SendStatus.RUNNING, ""
    if send.started_at is None:
        send.started_at = utcnow()
    return send


def cancel(session: Session, send_id: int) -> int:
    """Cancel: every row not yet sent becomes skipped. Returns how many were skipped."""
    send = _send(session, send_id, lock=True)
    if send.status in (SendStatus.DONE, SendStatus.CANCELLED):
        raise CampaignError(f"Send {send_id} is already {send.status.value}.")
    send.status, send.finished_at, send.status_reason = SendStatus.CANCELLED, utcnow(), "cancelled by staff"
    own = rowcount(session.execute(update(Delivery).where(Delivery.send_id == send_id,
                                                 Delivery.status == DeliveryStatus.PENDING)
                          .values(status=DeliveryStatus.SKIPPED, error="send cancelled")))
    return own + batches.cancel(session, send_id, "send cancelled")


def retry_failed(session: Session, send_id: int) -> int:
    """Put failed rows back to pending and run the send again; sent rows are never touched."""
    send = _send(session, send_id, lock=True)
    if send.status not in (SendStatus.DONE, SendStatus.PAUSED, SendStatus.RUNNING, SendStatus.FAILED):
        raise CampaignError(f"Send {send_id} is {send.status.value}.")
    if send.compacted_at is not None:
        raise CampaignError(f"Send {send_id} was compacted: its failed rows are gone, only its figures are kept.")
    count = rowcount(session.execute(update(Delivery).where(Delivery.send_id == send_id,
                                                   Delivery.status == DeliveryStatus.FAILED)
                            .values(status=DeliveryStatus.PENDING, claimed_at=None, attempts=0)))
    if count:
        send.status, send.finished_at, send.status_reason = SendStatus.RUNNING, None, ""
    return count


# Planning -----------------------------------------------------------------------------------------------------

def plan_send(session: Session, send_id: int) -> int:
    """Freeze the rendered issue on the send, write one planned row per eligible recipient and cut them into
    batches, in the database."""
    send = _send(session, send_id, lock=True)
    if send.status is not SendStatus.RUNNING:
        return 0
    if send.html is not None:  # planned before: a redelivered or retried plan task, or the sweeper's re-enqueue
        return 0
    issue = session.get(IssueRecord, send.issue_id)
    mailing_list = session.get(MailingList, send.list_id)
    assert issue is not None and mailing_list is not None
    freeze(send, issue, mailing_list, get_settings())  # the issue rendered for this list: name, language, brand
    if issue.published_at is None:
        issue.published_at = utcnow()
    engagement.freeze_links(session, send, mailing_list, get_settings().base_url)
    eligible = (
        select(literal(send_id), Subscriber.id, literal(DeliveryStatus.PLANNED.value), literal(0))
        .select_from(Subscription)
        .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
        .where(*audience.conditions(send.list_id, send.segment_expression, now=send.started_at,
                                    field_types=fields.types_of(session, send.list_id)))
        .order_by(Subscriber.id))
    statement = upsert_insert(session)(Delivery).from_select(["send_id", "subscriber_id", "status", "attempts"],
                                                             eligible)
    session.execute(statement.on_conflict_do_nothing(index_elements=["subscriber_id", "send_id"]))
    send.planned = session.scalar(select(func.count()).where(Delivery.send_id == send_id)) or 0
    batches.cut(session, send_id, get_settings().batch_size)
    return send.planned


def is_planned(session: Session, send_id: int) -> bool:
    """The plan freezes the issue onto the send in the transaction that writes the rows."""
    return session.scalar(select(Send.html.is_not(None)).where(Send.id == send_id)) is True


def refresh_statistics(session: Session) -> None:
    """ANALYZE the ledger after a plan bulk-loaded it (PostgreSQL's advice after any bulk load).

    Batch queries are planned from table statistics; until autovacuum catches up, they describe the table before
    the plan, and a batch's lookups of a thousand rows can be planned as scans of whole tables.
    """
    if _dialect(session) == "postgresql":
        session.execute(text("ANALYZE deliveries"))


def batch_ranges(session: Session, send_id: int, batch_size: int,
                 status: DeliveryStatus = DeliveryStatus.PENDING) -> list[tuple[int, int]]:
    """Id ranges of `batch_size` rows in `status` (rows of the per-row path), computed in SQL."""
    return [(first, last) for first, last, _rows in batches.row_ranges(session, send_id, batch_size, status)]


# Sending one batch --------------------------------------------------------------------------------------------
# Core statements on the deliveries table throughout: the ORM's bulk UPDATE would re-select the changed rows to
# synchronise a session that holds none of them.

def claim(session: Session, send_id: int, first_id: int, last_id: int) -> list[int]:
    """The per-row path: move the range's pending rows to `sending` in one statement: a row is claimed by one
    worker only.

    A claim is not an attempt: a claim lost with its worker must not bring the row closer to "gave up"; only the
    provider's temporary failures count (see `mark`)."""
    rows = session.execute(
        update(_DELIVERIES)
        .where(_DELIVERIES.c.send_id == send_id, _DELIVERIES.c.id.between(first_id, last_id),
               _DELIVERIES.c.status == DeliveryStatus.PENDING)
        .values(status=DeliveryStatus.SENDING, claimed_at=utcnow())
        .returning(_DELIVERIES.c.id)).scalars().all()
    return sorted(rows)


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _recheck(session: Session, list_id: int, ids: Sequence[int], slots: Sequence[Slot] = ()) -> list[Row]:
    """Eligibility at the moment of sending: someone who left after the plan gets nothing. The custom fields
    (`attributes`) are read only when the send's merge tags use one."""
    fields = field_names(slots)
    query = (select(_DELIVERIES.c.id, Subscriber.id, Subscriber.email, Subscriber.name, Subscriber.erased_at,
                    Subscription.status, Subscriber.tracking_opt_out,
                    Subscriber.attributes if fields else literal(None))
             .join(Subscriber, Subscriber.id == _DELIVERIES.c.subscriber_id)
             .outerjoin(Subscription, and_(Subscription.subscriber_id == Subscriber.id,
                                           Subscription.list_id == list_id))
             .where(id_in(_DELIVERIES.c.id, ids, _dialect(session))).order_by(_DELIVERIES.c.id))
    found = session.execute(query).all()
    suppressed = suppressed_among(session, (row[2] for row in found))
    rows = []
    for delivery_id, subscriber_id, email, name, erased_at, status, opted_out, attributes in found:
        reason = None
        if erased_at is not None:
            reason = "subscriber erased"
        elif email in suppressed:
            reason = "address suppressed"
        elif status is not SubscriptionStatus.CONFIRMED:
            reason = f"subscription {status.value if status else 'removed'}"
        rows.append(Row(delivery_id, subscriber_id, email, name, reason, not opted_out,
                        attributes if isinstance(attributes, dict) else None))
    return rows


def _skip(session: Session, rows: Sequence[Row]) -> None:
    by_reason: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        if row.reason:
            by_reason[row.reason].append(row.delivery_id)
    for reason, ids in by_reason.items():
        session.execute(update(_DELIVERIES).where(id_in(_DELIVERIES.c.id, ids, _dialect(session)))
                        .values(status=DeliveryStatus.SKIPPED, error=reason, claimed_at=None))


def _release(ids: Sequence[int], limit_s: float = 0, batch_id: int | None = None) -> None:
    """Rows claimed but not sent go back to pending (a batch's by reopening it), for the retry of this batch or a
    later one.

    With `limit_s`, a database outage is waited out (bounded) so the rows come back now, not a lease later."""
    def release() -> None:
        with session_scope() as session:
            if batch_id is not None:
                batches.release(session, batch_id)
                return
            session.execute(update(_DELIVERIES).where(id_in(_DELIVERIES.c.id, ids, _dialect(session)),
                                                      _DELIVERIES.c.status == DeliveryStatus.SENDING)
                            .values(status=DeliveryStatus.PENDING, claimed_at=None))

    if ids or batch_id is not None:
        until_stored(release, f"releasing {len(ids)} rows", limit_s)


def _close_empty(batch_id: int | None, settings: Settings) -> None:
    """A claimed batch with nothing left to send (every row skipped at the re-check, or none planned) is done."""
    def close(batch: int) -> None:
        with session_scope() as session:
            batches.finish(session, batch, 0, None, utcnow())

    if batch_id is not None:
        until_stored(lambda: close(batch_id), f"closing batch {batch_id}", settings.ledger_retry_s)


@dataclass(frozen=True)
class _Batch:
    ids: list[int]
    batch_id: int | None  # a batch row of the first pass; None for rows of the per-row path
    content: Content
    list_id: int
    web_url: str
    transport: str
    tracked: bool
    language: str
    slots: tuple[Slot, ...]


def _claim_batch(send_id: int, first_id: int, last_id: int, settings: Settings) -> _Batch | None:
    """Claim the range and read what every recipient shares, in one transaction.

    None when the send is not running (paused, cancelled): the batch leaves its rows pending.
    """
    with session_scope() as session:
        send = _send(session, send_id)
        if send.status is not SendStatus.RUNNING:
            return None
        claimed = batches.claim(session, send_id, first_id, last_id)
        batch_id, ids = claimed if claimed is not None else (None, claim(session, send_id, first_id, last_id))
        mailing_list = session.get(MailingList, send.list_id)
        slug = session.scalar(select(IssueRecord.slug).where(IssueRecord.id == send.issue_id))
        assert mailing_list is not None and slug is not None
        return _Batch(ids, batch_id, content_for(send, mailing_list, settings), mailing_list.id,
                      web_url(slug, mailing_list.slug, settings), send.transport,
                      send.track_clicks or send.track_opens, send.language or mailing_list.language,
                      slots_of(send))


def _recheck_before_sending(send_id: int, list_id: int, ids: Sequence[int], slots: Sequence[Slot] = (),
                            batch_id: int | None = None) -> list[Row] | None:
    """Eligibility read once more after any wait, just before the provider call; the ineligible rows are marked
    skipped in the same short transaction. None when the send stopped running meanwhile (the caller releases).

    Nothing is locked: an unsubscribe committed after this read is covered by `await_handover` on its side, which
    costs the rare leaver in flight a short wait instead of costing every batch a row lock (and a WAL record) per
    recipient on the subscriptions, which was 8 of the ~90 us of CPU a recipient costs (bench/batch_cpu.py).
    """
    with session_scope() as session:
        status = session.scalar(select(Send.status).where(Send.id == send_id))
        if status is not SendStatus.RUNNING:
            return None
        rows = _recheck(session, list_id, ids, slots)
        skipped = sum(1 for row in rows if row.reason)
        if skipped:
            _skip(session, rows)
            if batch_id is not None:  # those rows leave the batch in the same transaction
                batches.left(session, batch_id, skipped)
    return rows


HANDOVER_WAIT_S = 30.0


def in_flight_among(subscriber_ids: Sequence[int]) -> set[int]:
    """Which of these people a batch holds in flight now (a row of theirs is `sending`, or planned in a claimed
    batch): one statement of two indexed reads, in
    autocommit (no BEGIN and COMMIT around a single read), for a whole group of unsubscribes
    (newsletter/web/intake.py) or for one person in `await_handover`."""
    if not subscriber_ids:
        return set()
    engine = get_engine()
    query = union(select(_DELIVERIES.c.subscriber_id).where(
        id_in(_DELIVERIES.c.subscriber_id, sorted(set(subscriber_ids)), engine.dialect.name),
        _DELIVERIES.c.status == DeliveryStatus.SENDING), batches.held_among(subscriber_ids, engine.dialect.name))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        return set(connection.scalars(query))


def await_handover(subscriber_id: int, limit_s: float = HANDOVER_WAIT_S, poll_s: float = 0.05) -> bool:
    """Return once no batch holds this subscriber in flight; call it after their unsubscribe (or erasure) has
    committed and before telling them it is done. False if `limit_s` passed first.

    A batch that re-checks after that commit skips them. One that re-checked before it still has their row
    `sending` until the provider has answered and the row is marked, so waiting for the row to leave `sending`
    means the answer comes after the handover: they are never told "unsubscribed" and then sent the issue. Only
    someone in a batch in flight at that moment waits (a batch at a time out of the whole list), for at most one
    provider call; everyone else costs one indexed read. Past the limit the answer goes anyway: the commit stands,
    and only a provider call slower than the limit could still deliver.
    """
    deadline = time.monotonic() + limit_s
    while True:
        if subscriber_id not in in_flight_among([subscriber_id]):
            return True
        if time.monotonic() >= deadline:
            log.warning("subscriber %s is still in a batch in flight after %.0f s; answering anyway",
                        subscriber_id, limit_s)
            return False
        time.sleep(poll_s)


def send_batch(send_id: int, first_id: int, last_id: int, *, transport: Transport | None = None,
               throttle: Callable[[int], None] | None = None) -> BatchReport:
    """Claim, re-check, send and mark one range of a send. Raises TransportError(retryable) for a later retry,
    and the database's error when it failed before the provider call (the task retries; nothing was sent)."""
    settings = get_settings()
    batch = _claim_batch(send_id, first_id, last_id, settings)
    if batch is None:
        return BatchReport(paused=True)
    if not batch.ids:
        _close_empty(batch.batch_id, settings)
        finish_if_complete(send_id)
        return BatchReport()
    with Heartbeat(batch.ids, settings.claim_lease_s, batch.batch_id), ExitStack() as window:
        results = _send_claimed(send_id, batch, settings, transport, throttle, window)
        if isinstance(results, BatchReport):
            return results
        # The provider has accepted these: forgetting them would re-send them a lease from now, so a database
        # outage is waited out here (bounded and logged) while the heartbeat keeps the lease.
        sent, failed, retry = until_stored(lambda: mark(results, settings.max_delivery_attempts, send_id=send_id,
                                                        batch_id=batch.batch_id),
                                           f"send {send_id}: recording {len(results)} outcomes",
                                           settings.ledger_retry_s)
    skipped = len(batch.ids) - len(results)
    # In its own transaction, after the marks commit: two workers finishing their last batches at once would
    # otherwise each see the other's rows still in flight, and neither would close the send.
    finish_if_complete(send_id)
    return BatchReport(claimed=len(batch.ids), sent=sent, failed=failed, skipped=skipped, retry=retry)


def _send_claimed(send_id: int, batch: _Batch, settings: Settings, transport: Transport | None,
                  throttle: Callable[[int], None] | None, window: ExitStack) -> list[Result] | BatchReport:
    """Everything between the claim and the provider's answer; every way out but an answer releases the rows.

    From the provider call on, a SIGTERM waits (`window`, closed by the caller once the outcomes are recorded)."""
    unsent = batch.ids
    active: Transport | None = None
    try:
        active = transport or get_transport(settings, batch.transport)
        if throttle is not None:
            throttle(len(batch.ids))
        rows = _recheck_before_sending(send_id, batch.list_id, batch.ids, batch.slots, batch.batch_id)
        if rows is None:
            _release(unsent, settings.claim_lease_s, batch.batch_id)
            return BatchReport(claimed=len(batch.ids), paused=True)
        sendable = [row for row in rows if not row.reason]
        unsent = [row.delivery_id for row in sendable]
        if not sendable:
            _close_empty(batch.batch_id, settings)
            finish_if_complete(send_id)
            return BatchReport(claimed=len(batch.ids), skipped=len(rows))
        recipients = recipients_for(sendable, batch.list_id, batch.web_url, settings,
                                    verp=batch.transport == TransportName.SMTP.value,
                                    track_send_id=send_id if batch.tracked else None, language=batch.language,
                                    slots=batch.slots)
        results: list[Result] = []
        window.enter_context(ambiguous_window())
        for start in range(0, len(recipients), active.max_batch):
            results.extend(active.send(batch.content, recipients[start:start + active.max_batch]))
        return results
    except TransportError as exc:
        _release(unsent, settings.claim_lease_s, batch.batch_id)
        if not exc.fatal:
            raise
        with session_scope() as session:
            pause(session, send_id, reason=f"Stopped: {exc}")
        log.error("send %s paused: %s", send_id, exc)
        return BatchReport(claimed=len(batch.ids), skipped=len(batch.ids) - len(unsent), paused=True)
    except BaseException:
        _release(unsent, settings.claim_lease_s, batch.batch_id)
        raise
    finally:
        if transport is None and active is not None:
            active.close()


def finish_if_complete(send_id: int) -> bool:
    """A running send with no pending or in-flight rows is done (a welcome step's never is: it awaits more)."""
    with session_scope() as session:
        done = rowcount(session.execute(update(Send).where(Send.id == send_id, Send.status == SendStatus.RUNNING,
                                                  Send.kind == SendKind.CAMPAIGN.value,
                                                  ~batches.open_work())
                               .values(status=SendStatus.DONE, finished_at=utcnow())))
    return bool(done)


# Housekeeping -------------------------------------------------------------------------------------------------

def due_sends(session: Session) -> list[int]:
    return list(session.scalars(select(Send.id).where(Send.status == SendStatus.SCHEDULED,
                                                      Send.scheduled_at <= utcnow())))


def pending_ranges(session: Session, send_id: int) -> list[tuple[int, int]]:
    """What batch tasks must still run: the open batches, then ranges of the per-row path's pending rows."""
    return batches.open_ranges(session, send_id) + batch_ranges(session, send_id, get_settings().batch_size)
