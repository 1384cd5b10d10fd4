"""Read-side questions about lists, subscribers and suppressions, each asked one way for every front end.

The admin pages, the JSON API and the CLI show the same things (a list's counts, who matches a search, the recent
suppressions); answering each in one named function keeps their results the same and gives a slow query one place
to be fixed. Nothing here writes; the rules that change state live in `subscribers.service`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from subscribers.models import (
    ConsentEvent,
    ImportJob,
    MailingList,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    Suppression,
)

MAX_ID = 2**62  # an id from a URL beyond this cannot exist, and PostgreSQL would refuse it as out of BIGINT range
_WHOLE_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class ListOrder(StrEnum):
    NAME = "name"  # what people read (the admin)
    SLUG = "slug"  # what scripts address (the API and the CLI)


@dataclass(frozen=True)
class ListCounts:
    mailing_list: MailingList
    counts: dict[str, int]


@dataclass(frozen=True)
class Membership:
    mailing_list: MailingList
    status: SubscriptionStatus


@dataclass(frozen=True)
class SubscriberRow:
    subscriber: Subscriber
    memberships: list[Membership]


@dataclass(frozen=True)
class SubscriberPage:
    rows: list[SubscriberRow]
    next_after: int | None  # the keyset cursor of the next page; None on the last one


# Lists --------------------------------------------------------------------------------------------------------

def all_lists(session: Session, order: ListOrder = ListOrder.NAME) -> list[MailingList]:
    column = MailingList.name if order is ListOrder.NAME else MailingList.slug
    return list(session.scalars(select(MailingList).order_by(column, MailingList.id)))


def counts_by_list(session: Session, list_ids: Sequence[int] | None = None) -> dict[int, dict[str, int]]:
    """Subscriptions per status for the given lists (every list when None), in one GROUP BY.

    One scan answers every list: asked list by list, a big list is counted by a sequential scan of the whole
    table each time (PostgreSQL does not use the (list_id, status) index for a list that is most of the table).
    Every list asked about appears, with zeros where it has nobody.
    """
    query = select(Subscription.list_id, Subscription.status, func.count()).group_by(Subscription.list_id,
                                                                                     Subscription.status)
    if list_ids is not None:
        if not list_ids:
            return {}
        query = query.where(Subscription.list_id.in_(list(list_ids)))
    counts: dict[int, dict[str, int]] = {list_id: _zeros() for list_id in list_ids or ()}
    for list_id, status, number in session.execute(query):
        counts.setdefault(list_id, _zeros())[SubscriptionStatus(status).value] = number
    return counts


def _zeros() -> dict[str, int]:
    return {status.value: 0 for status in SubscriptionStatus}


def lists_with_counts(session: Session, order: ListOrder = ListOrder.NAME) -> list[ListCounts]:
    """Every list with its counts: the dashboard, the lists page, `GET /lists` and `newsletter lists ls`."""
    counts = counts_by_list(session)
    return [ListCounts(m, counts.get(m.id) or _zeros()) for m in all_lists(session, order)]


# Subscribers --------------------------------------------------------------------------------------------------

def find_subscriber(session: Session, subscriber_id: int) -> Subscriber | None:
    """The subscriber with this id (erased ones too: their anonymised row stays), None for any id that cannot be."""
    return session.get(Subscriber, subscriber_id) if 0 < subscriber_id < MAX_ID else None


def find_subscriber_by_email(session: Session, email: str) -> Subscriber | None:
    """By a normalised address (see service.normalise_email): one lookup on the unique index."""
    return session.scalar(select(Subscriber).where(Subscriber.email == email))


def memberships(session: Session, subscriber_ids: Iterable[int]) -> dict[int, list[Membership]]:
    """Each subscriber's subscriptions with their lists, in one query, in the order the lists were created."""
    wanted = list(subscriber_ids)
    found: dict[int, list[Membership]] = {subscriber_id: [] for subscriber_id in wanted}
    if not wanted:
        return found
    rows = session.execute(select(Subscription.subscriber_id, Subscription.status, MailingList)
                           .join(MailingList, MailingList.id == Subscription.list_id)
                           .where(Subscription.subscriber_id.in_(wanted)).order_by(Subscription.list_id))
    for subscriber_id, status, mailing_list in rows:
        found[subscriber_id].append(Membership(mailing_list, SubscriptionStatus(status)))
    return found


def search_subscribers(session: Session, *, search: str = "", list_slug: str = "",
                       status: SubscriptionStatus | None = None, after: int = 0, limit: int = 50) -> SubscriberPage:
    """One page of subscribers (not erased) by id, after the id `after`: keyset pagination, so a page costs the
    same at any depth and nothing counts the whole table.

    A `search` that is a whole address is one lookup on the unique index (the common case); anything else matches a
    part of the address or of the name. An unknown list matches nobody.
    """
    query = select(Subscriber).where(Subscriber.erased_at.is_(None), Subscriber.id > max(0, min(after, MAX_ID)))
    if list_slug or status is not None:
        conditions = [Subscription.subscriber_id == Subscriber.id]
        if list_slug:
            wanted = session.scalar(select(MailingList.id).where(MailingList.slug == list_slug))
            conditions.append(Subscription.list_id == (wanted or -1))
        if status is not None:
            conditions.append(Subscription.status == status)
        query = query.where(select(Subscription.id).where(*conditions).exists())
    needle = search.strip().lower()
    if needle and _WHOLE_ADDRESS.match(needle):
        query = query.where(Subscriber.email == needle)
    elif needle:
        pattern = f"%{needle}%"
        query = query.where(or_(Subscriber.email.like(pattern), func.lower(Subscriber.name).like(pattern)))
    found = list(session.scalars(query.order_by(Subscriber.id).limit(limit + 1)))
    more, found = len(found) > limit, found[:limit]
    by_subscriber = memberships(session, [s.id for s in found])
    return SubscriberPage([SubscriberRow(s, by_subscriber[s.id]) for s in found],
                          found[-1].id if more and found else None)


def consent_timeline(session: Session, subscriber_id: int, limit: int = 200) -> list[ConsentEvent]:
    """The newest consent events of one person first."""
    return list(session.scalars(select(ConsentEvent).where(ConsentEvent.subscriber_id == subscriber_id)
                                .order_by(ConsentEvent.at.desc(), ConsentEvent.id.desc()).limit(limit)))


# Suppressions and imports -------------------------------------------------------------------------------------

def recent_suppressions(session: Session, limit: int) -> list[Suppression]:
    """The newest first (erased ones too: their address is blank, their hash still refuses)."""
    return list(session.scalars(select(Suppression).order_by(Suppression.id.desc()).limit(limit)))


def import_report_path(session: Session, job_id: int) -> Path | None:
    """The error report of an import, if the job exists and its report is still on disk."""
    job = session.get(ImportJob, job_id) if 0 < job_id < MAX_ID else None
    if job is None or not job.report_path or not Path(job.report_path).exists():
        return None
    return Path(job.report_path)
