"""Read-side questions about sends and deliveries, each asked one way for the admin, the API and the CLI.

Counters and figures come from the ledger (`worker.stats`, `worker.figures`); this module joins them with the rows
a page or a command shows, so every front end lists and reports sends the same way. Nothing here writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer.models import IssueRecord
from subscribers.models import MailingList
from worker import batches, welcome
from worker.figures import send_figures
from worker.models import Delivery, DeliveryStatus, ProviderEvent, Send, SendKind, SendStatus, WelcomeStep
from worker.stats import send_counters

MAX_ID = 2**62  # an id from a URL beyond this cannot exist, and PostgreSQL would refuse it as out of BIGINT range
# Sends whose delivery figures mean something: started, whether or not they are finished.
WITH_FIGURES = frozenset({SendStatus.RUNNING, SendStatus.PAUSED, SendStatus.DONE})


@dataclass(frozen=True)
class SendRow:
    send: Send
    issue_slug: str
    list_slug: str
    counts: dict[str, int]
    figures: dict[str, int] | None  # only when asked for, and only for a send in WITH_FIGURES


@dataclass(frozen=True)
class WelcomeStepRow:
    position: int  # 1 = the first mailed (by delay)
    step: WelcomeStep
    delay: str  # as staff type it: 0, 30m, 2d, 1w
    send: Send
    issue: IssueRecord
    counts: dict[str, int]
    figures: dict[str, int]  # opened and clicked count people (machines excluded), as in every send's figures


@dataclass(frozen=True)
class SendProgress:
    status: SendStatus
    reason: str
    counts: dict[str, int]


@dataclass(frozen=True)
class SendDetail:
    send: Send
    issue: IssueRecord
    mailing_list: MailingList
    counts: dict[str, int]
    figures: dict[str, int]


@dataclass(frozen=True)
class SubscriberDelivery:
    delivery: Delivery
    issue_subject: str
    list_slug: str
    status: DeliveryStatus  # the row's own, or its batch's (worker/batches.py)
    sent_at: datetime | None


@dataclass(frozen=True)
class SubscriberActivity:
    deliveries: list[SubscriberDelivery]
    events: list[ProviderEvent]
    older_than: int | None  # the keyset cursor of older deliveries; None when these are the oldest


def find_send(session: Session, send_id: int) -> Send | None:
    return session.get(Send, send_id) if 0 < send_id < MAX_ID else None


def recent_sends(session: Session, limit: int, *, with_figures: bool = False, before: int | None = None
                 ) -> list[SendRow]:
    """The newest sends first, with their issue and list and their counters (the dashboard, `newsletter sends`);
    `before` pages back from a send id (keyset: a page costs the same at any depth)."""
    query = (select(Send, IssueRecord.slug, MailingList.slug)
             .join(IssueRecord, IssueRecord.id == Send.issue_id).join(MailingList, MailingList.id == Send.list_id)
             .where(Send.kind == SendKind.CAMPAIGN.value))  # welcome steps: their list's series (welcome_series)
    if before is not None:
        query = query.where(Send.id < min(before, MAX_ID))
    rows = session.execute(query.order_by(Send.id.desc()).limit(limit)).all()
    return [SendRow(send, issue_slug, list_slug, send_counters(session, send.id),
                    send_figures(session, send.id) if with_figures and send.status in WITH_FIGURES else None)
            for send, issue_slug, list_slug in rows]


def sends_of_issue(session: Session, issue_id: int) -> list[Send]:
    return list(session.scalars(select(Send).where(Send.issue_id == issue_id).order_by(Send.id.desc())))


def send_progress(session: Session, send_id: int) -> SendProgress | None:
    """Status and counters: what a progress bar polls (the admin's JSON, the API, the CLI's summary)."""
    send = find_send(session, send_id)
    if send is None:
        return None
    return SendProgress(send.status, send.status_reason, send_counters(session, send.id))


def send_detail(session: Session, send_id: int) -> SendDetail | None:
    """Everything about one send: its issue and list, counters and what came back."""
    send = find_send(session, send_id)
    if send is None:
        return None
    issue = session.get(IssueRecord, send.issue_id)
    mailing_list = session.get(MailingList, send.list_id)
    assert issue is not None and mailing_list is not None  # foreign keys
    return SendDetail(send, issue, mailing_list, send_counters(session, send.id), send_figures(session, send.id))


def subscriber_activity(session: Session, subscriber_id: int, email: str, limit: int = 50,
                        before: int | None = None) -> SubscriberActivity:
    """One person's deliveries, newest first with their issue and list (`before` pages back by delivery id), and
    the newest provider events about their address (which name no subscriber)."""
    query = (select(Delivery, IssueRecord.subject, MailingList.slug,
                    batches.status_of(),
                    batches.sent_at_of())
             .join(Send, Send.id == Delivery.send_id)
             .join(IssueRecord, IssueRecord.id == Send.issue_id).join(MailingList, MailingList.id == Send.list_id)
             .where(Delivery.subscriber_id == subscriber_id))
    if before is not None:
        query = query.where(Delivery.id < min(before, MAX_ID))
    rows = session.execute(query.order_by(Delivery.id.desc()).limit(limit + 1)).all()
    deliveries = [SubscriberDelivery(delivery, subject, slug, DeliveryStatus(status), sent_at)
                  for delivery, subject, slug, status, sent_at in rows[:limit]]
    events = session.scalars(select(ProviderEvent).where(ProviderEvent.email == email)
                             .order_by(ProviderEvent.id.desc()).limit(limit))
    return SubscriberActivity(deliveries, list(events),
                              deliveries[-1].delivery.id if len(rows) > limit and deliveries else None)


def welcome_series(session: Session, list_id: int) -> list[WelcomeStepRow]:
    """A list's welcome series in mailing order, each step with its ledger counters and figures (`welcome ls`,
    the list's admin page)."""
    rows = []
    for position, step in enumerate(welcome.steps_of(session, list_id), start=1):
        send = session.get(Send, step.send_id)
        assert send is not None
        issue = session.get(IssueRecord, send.issue_id)
        assert issue is not None
        rows.append(WelcomeStepRow(position, step, welcome.format_delay(step.delay_seconds), send, issue,
                                   send_counters(session, send.id), send_figures(session, send.id)))
    return rows
