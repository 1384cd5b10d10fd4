"""The one way to create and steer a send: every front end (CLI, admin, API, benchmarks) calls only this module.

A send's life is: create (draft or scheduled) -> start -> plan -> batches -> done, with pause, resume, cancel and
retry-failed on the way. The ledger (worker/campaigns.py) holds the state and the exactly-once rules; this module
adds the two things front ends used to spell out for themselves:

- *what starts after the commit*: with a broker, a task by name once the transaction that started the send has
  committed (a worker must never look for a row that is not there yet); without one (the embedded default), the
  send runs right after the commit, in this process, reporting progress to the caller;
- *one set of options*: a new way to choose or time recipients is a field of SendOptions and one change here.

Nothing here imports the task modules: tasks are enqueued by name (worker/app.py), so the web process never loads
the sending engine's task code, and tasks may call this module without an import cycle.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer.batch import Content, Recipient, Result, TransportError
from mailer.db import session_scope, utcnow
from mailer.issue import IssueError, parse_issue
from mailer.merge_tags import sample_values
from mailer.models import IssueRecord
from mailer.placeholders import Key
from mailer.settings import TransportName, get_settings
from mailer.transports import get_transport
from subscribers import audience
from subscribers.models import MailingList
from subscribers.service import ServiceError, normalise_email
from worker import campaigns, engagement, welcome
from worker.app import CONTINUE_SEND_TASK, PLAN_SEND_TASK, SEND_BATCH_TASK, celery_app, is_inline, run_after_commit
from worker.content import SAMPLE_NAME, freeze, slots_of
from worker.leases import ranges_of
from worker.models import Send, SendKind, SendStatus, WelcomeStep
from worker.ratelimit import throttle_for

log = logging.getLogger(__name__)

SendError = campaigns.CampaignError
Progress = Callable[[int, int], None]
"""Called after each batch of an inline run with (recipients done, recipients planned)."""

Ranges = list[tuple[int, int]]


class SendAction(StrEnum):
    """What staff may do to a send once it exists (the admin's buttons, the API's verbs, the CLI's commands)."""

    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"
    RETRY_FAILED = "retry-failed"


@dataclass(frozen=True)
class SendOptions:
    """How a send is made. A new option (a segment, A/B variants, a time per recipient) is a field here."""

    allow_resend: bool = False
    scheduled_at: datetime | None = None
    transport: str | None = None
    created_by: str = ""
    segment: str | None = None  # the name of one of the list's segments: only its members get the send


# Creating and starting -----------------------------------------------------------------------------------------

def create(session: Session, issue_id: int, list_id: int, options: SendOptions = SendOptions(), *,
                on_progress: Progress | None = None) -> Send:
    """Create a send; unless it is scheduled, start it. The work begins once the caller commits."""
    issue = session.get(IssueRecord, issue_id)
    mailing_list = session.get(MailingList, list_id)
    if issue is None or mailing_list is None:
        raise SendError("No such issue or list.")
    if not issue.html or not issue.text:
        raise SendError(f"Issue '{issue.slug}' has not been rendered.")
    _parses(issue)
    earlier = session.scalar(select(Send.id).where(
        Send.issue_id == issue_id, Send.list_id == list_id, Send.kind == SendKind.CAMPAIGN.value,
        Send.status.not_in([SendStatus.CANCELLED, SendStatus.FAILED])))
    if earlier is not None and not options.allow_resend:
        raise SendError(f"Issue '{issue.slug}' was already sent to '{mailing_list.slug}' (send {earlier}). "
                        "Use allow_resend (--allow-resend) to send it again.")
    scheduled_at = options.scheduled_at
    if scheduled_at is not None:
        if scheduled_at.tzinfo is None:
            raise SendError("A schedule time needs a time zone (UTC is assumed by the CLI).")
        if scheduled_at <= utcnow():
            raise SendError(f"The schedule time {scheduled_at.isoformat()} is in the past; "
                            "send now instead, or choose a later time.")
    settings = get_settings()
    link_problem = settings.base_url_problem()
    if link_problem and settings.production:
        raise SendError(link_problem)
    if link_problem:
        log.warning("send of issue %s to list %s: %s", issue.slug, mailing_list.slug, link_problem)
    transport = TransportName(options.transport or settings.transport)
    try:
        segment = audience.get_segment(session, list_id, options.segment) if options.segment else None
    except ServiceError as exc:
        raise SendError(str(exc)) from exc
    send = Send(issue_id=issue_id, list_id=list_id, transport=transport,
                segment_id=segment.id if segment else None, segment_expression=segment.expression if segment else None,
                status=SendStatus.SCHEDULED if scheduled_at else SendStatus.DRAFT, scheduled_at=scheduled_at,
                allow_resend=options.allow_resend, created_by=options.created_by)
    session.add(send)
    session.flush()
    if scheduled_at is None:
        start(session, send.id, on_progress=on_progress)
    return send


def start(session: Session, send_id: int, *, on_progress: Progress | None = None) -> Send:
    """Start a draft or scheduled send now; planning begins after the commit."""
    send = campaigns.start_send(session, send_id)
    _after_commit(session, send_id, fresh=True, on_progress=on_progress)
    return send


def start_due() -> list[int]:
    """Start every scheduled send whose time has come (beat calls this every 30 s)."""
    started = []
    with session_scope() as session:
        due = campaigns.due_sends(session)
    for send_id in due:
        with session_scope() as session:
            try:
                start(session, send_id)
            except SendError:
                continue  # started by another beat tick, or paused meanwhile
        started.append(send_id)
    return started


# Steering ------------------------------------------------------------------------------------------------------

def control(session: Session, send_id: int, action: SendAction, actor: str = "",
            *, on_progress: Progress | None = None) -> int:
    """Pause, resume, cancel or retry a send's failed rows. Returns the rows affected (cancel, retry-failed).

    Resume and retry-failed enqueue what the ledger says is still open once the caller commits; resume also
    accepts a running send, which is how an operator re-enqueues a send whose queue was lost.
    """
    affected = 0
    if action is SendAction.CANCEL and session.scalar(select(Send.kind).where(Send.id == send_id)) == SendKind.WELCOME:
        raise SendError(f"Send {send_id} is a welcome step's: remove the step instead (it stops its deliveries).")
    if action is SendAction.PAUSE:
        campaigns.pause(session, send_id, f"paused by {actor}" if actor else "")
    elif action is SendAction.RESUME:
        campaigns.resume(session, send_id)
    elif action is SendAction.CANCEL:
        affected = campaigns.cancel(session, send_id)
    elif action is SendAction.RETRY_FAILED:
        affected = campaigns.retry_failed(session, send_id)
    if action in (SendAction.RESUME, SendAction.RETRY_FAILED):
        _after_commit(session, send_id, fresh=False, on_progress=on_progress)
    return affected


# The welcome series --------------------------------------------------------------------------------------------

def add_welcome_step(session: Session, list_id: int, issue_id: int, delay_seconds: int, *,
                     since: datetime | None = None, created_by: str = "") -> WelcomeStep:
    """Add a step to a list's welcome series: its send is created running, with the issue frozen now (later edits
    of the issue change nothing; remove and add the step to mail a new version).

    It takes subscribers confirmed from now on, or from `since` (in the past) when staff ask to welcome some who
    are already there; each gets it `delay_seconds` after their confirmation, once.
    """
    query = select(MailingList).where(MailingList.id == list_id)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()  # two staff adding at once take turns, so the limit holds
    mailing_list = session.scalar(query)
    issue = session.get(IssueRecord, issue_id)
    if issue is None or mailing_list is None:
        raise SendError("No such issue or list.")
    if not issue.html or not issue.text:
        raise SendError(f"Issue '{issue.slug}' has not been rendered.")
    _parses(issue)
    if not 0 <= delay_seconds <= welcome.MAX_DELAY.total_seconds():
        raise SendError(f"A welcome email can wait 0 to {welcome.MAX_DELAY.days} days after confirmation.")
    if len(welcome.steps_of(session, list_id)) >= welcome.MAX_STEPS:
        raise SendError(f"The list '{mailing_list.slug}' already has {welcome.MAX_STEPS} welcome emails, the most "
                        "a series may have; remove one first.")
    now = utcnow()
    if since is not None and (since.tzinfo is None or since > now):
        raise SendError("The first confirmation to welcome must be a past time with a time zone.")
    settings = get_settings()
    link_problem = settings.base_url_problem()
    if link_problem and settings.production:
        raise SendError(link_problem)
    send = Send(issue_id=issue_id, list_id=list_id, transport=TransportName(settings.transport),
                kind=SendKind.WELCOME.value, status=SendStatus.RUNNING, started_at=now, created_by=created_by)
    session.add(send)
    session.flush()
    freeze(send, issue, mailing_list, settings)
    engagement.freeze_links(session, send, mailing_list, settings.base_url)
    step = WelcomeStep(list_id=list_id, send_id=send.id, delay_seconds=delay_seconds, eligible_from=since or now,
                       created_by=created_by, created_at=now)
    session.add(step)
    session.flush()
    return step


def remove_welcome_step(session: Session, list_id: int, position: int) -> WelcomeStep:
    """Remove the step at `position` (1 = first mailed): its send is cancelled, so nobody gets it from now on
    (rows not yet sent are skipped; a batch in flight finds the send stopped). Its send and figures remain."""
    steps = welcome.steps_of(session, list_id)
    if not 1 <= position <= len(steps):
        raise SendError(f"No welcome email at position {position}; the series has {len(steps)}.")
    step = steps[position - 1]
    send = session.get(Send, step.send_id)
    if send is not None and send.status not in (SendStatus.CANCELLED, SendStatus.DONE):
        campaigns.cancel(session, step.send_id)
        send.status_reason = "welcome step removed"
    session.delete(step)
    session.flush()
    return step


def run_welcome_series(now: datetime | None = None) -> int:
    """Admit every subscriber now due for a step and send them through the normal batches (beat, every 30 s).
    Returns how many were admitted. With a broker the new rows' ranges are enqueued (a lost one is the sweeper's,
    as for any send); without one, each step's pending rows are sent here."""
    admitted = 0
    with session_scope() as session:
        steps = welcome.running_steps(session)
    batch_size = get_settings().batch_size
    for step_id, send_id in steps:
        with session_scope() as session:
            ids = welcome.admit_due(session, step_id, now)
        admitted += len(ids)
        if is_inline():
            with session_scope() as session:
                ranges = campaigns.pending_ranges(session, send_id)
            if ranges:
                run_inline(send_id, ranges)
        else:
            for first, last in ranges_of(ids, batch_size):
                celery_app.send_task(SEND_BATCH_TASK, args=(send_id, first, last))
    if admitted:
        log.info("welcome series: %s deliveries admitted", admitted)
    return admitted


# Running -------------------------------------------------------------------------------------------------------

def planned_ranges(send_id: int) -> tuple[int, Ranges]:
    """Plan the send (one row per recipient, cut into batches) and list what batch tasks must run; close it if
    empty.

    Returns (recipients planned, ranges)."""
    with session_scope() as session:
        planned = campaigns.plan_send(session, send_id)
    with session_scope() as session:
        if planned:
            campaigns.refresh_statistics(session)
        ranges = campaigns.pending_ranges(session, send_id)
    if not ranges:
        campaigns.finish_if_complete(send_id)
    log.info("send %s planned: %s recipients in %s batches", send_id, planned, len(ranges))
    return planned, ranges


def open_ranges(send_id: int) -> Ranges:
    """The ranges still holding pending rows (after resume, retry-failed or a lost queue); close it if none.
    A send whose plan never ran (paused before it, or its plan task lost with the queue) is planned now."""
    with session_scope() as session:
        planned = campaigns.is_planned(session, send_id)
    if not planned:
        return planned_ranges(send_id)[1]
    with session_scope() as session:
        ranges = campaigns.pending_ranges(session, send_id)
    if not ranges:
        campaigns.finish_if_complete(send_id)
    return ranges


def run_inline(send_id: int, ranges: Sequence[tuple[int, int]], on_progress: Progress | None = None) -> None:
    """Send the ranges batch by batch in this process (no broker): the embedded mode and `newsletter send`."""
    with session_scope() as session:
        send = session.get(Send, send_id)
        if send is None:
            raise SendError(f"No send {send_id}.")
        transport, planned = send.transport, send.planned
    throttle = throttle_for(transport)
    done = 0
    for first, last in ranges:
        report = campaigns.send_batch(send_id, first, last, throttle=throttle)
        done += report.sent + report.failed + report.skipped
        if on_progress is not None:
            on_progress(done, planned)
        if report.paused:
            break
    campaigns.finish_if_complete(send_id)


def _after_commit(session: Session, send_id: int, *, fresh: bool, on_progress: Progress | None) -> None:
    """Hand the send to the workers (by task name) or, without a broker, run it here once the commit is done."""
    if is_inline():
        def run() -> None:
            run_inline(send_id, planned_ranges(send_id)[1] if fresh else open_ranges(send_id), on_progress)
    else:
        def run() -> None:
            celery_app.send_task(PLAN_SEND_TASK if fresh else CONTINUE_SEND_TASK, args=(send_id,))
    run_after_commit(session, run)


def _parses(issue: IssueRecord) -> None:
    """The plan renders the issue's source again: one stored before a rule it now breaks (say, text between {{ }}
    that is not a merge tag) is refused here, with its problems, rather than failing in the plan task."""
    try:
        parse_issue(issue.source, issue.slug)
    except IssueError as exc:
        raise SendError(f"Issue '{issue.slug}' cannot be sent as written:\n{exc}") from exc


# Test sends ----------------------------------------------------------------------------------------------------

def send_test(session: Session, issue_id: int, to_email: str, *, list_id: int | None = None) -> Result:
    """One copy to staff, marked [TEST], outside the ledger; links point at harmless sample pages. The issue is
    rendered afresh (as its list gets it, when given), and its merge tags take the sample subscriber's values."""
    settings = get_settings()
    issue = session.get(IssueRecord, issue_id)
    if issue is None or not issue.html or not issue.text:
        raise SendError("No such rendered issue.")
    _parses(issue)
    mailing_list = session.get(MailingList, list_id) if list_id else None
    from_name, from_email, reply_to = (mailing_list.sender(settings) if mailing_list else
                                       (settings.from_name, settings.from_email, settings.reply_to))
    address = normalise_email(to_email, check_deliverability=False)
    base = settings.base_url.rstrip("/")
    frozen = Send()
    freeze(frozen, issue, mailing_list, settings)  # as the list will get it: its language and brand
    slots = slots_of(frozen)
    assert frozen.subject is not None and frozen.html is not None and frozen.text is not None
    content = Content(subject=f"[TEST] {frozen.subject}", html=frozen.html, text=frozen.text, from_email=from_email,
                      from_name=from_name, reply_to=reply_to, category="test")
    recipient = Recipient(email=address, values={
        Key.NAME: "there", Key.EMAIL: address, Key.UNSUBSCRIBE_URL: f"{base}/unsubscribe/test-message",
        Key.PREFERENCES_URL: f"{base}/preferences/test-message", Key.WEB_URL: f"{base}/archive/{issue.slug}"},
        tags=sample_values(slots, SAMPLE_NAME, address))
    try:  # a relay that is down or a DKIM key that cannot be used is the answer to the test, not a traceback
        transport = get_transport(settings)
    except TransportError as exc:
        return Result(recipient, ok=False, error=str(exc))
    try:
        return transport.send(content, [recipient])[0]
    except TransportError as exc:
        return Result(recipient, ok=False, error=str(exc))
    finally:
        transport.close()
