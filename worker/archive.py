"""What the public web archive may show: issues that actually went out to a list whose archive is public, each in
the copy its send froze for that list (language, brand).

The one definition of "public" lives here (`_public_sends`), so the global index, a list's index, both feeds and
the issue pages can never disagree about a private list: its issues appear nowhere unless they also went to a
public list, and a private list's own pages answer exactly as a list that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import Session

from mailer import merge_tags
from mailer.db import as_utc
from mailer.i18n import DEFAULT_LANGUAGE
from mailer.models import IssueRecord
from subscribers.mailing_lists import plausible_slug
from subscribers.models import MailingList
from worker.models import Send, SendKind, SendStatus

SENT = (SendStatus.RUNNING, SendStatus.DONE, SendStatus.PAUSED)


@dataclass(frozen=True)
class Entry:
    """One issue as a list of the archive shows it (no HTML: listings never load the copies)."""

    issue_slug: str
    subject: str
    preheader: str
    sent_at: datetime | None
    list_slug: str
    list_name: str
    language: str  # the send's (the issue's own `lang`, else the list's at the time)


@dataclass(frozen=True)
class Copy:
    """One archived issue as its send froze it for its list."""

    html: str
    language: str
    subject: str
    mailing_list: MailingList


def _public_sends(list_id: int | None = None, *, welcome: bool = False) -> Select[int, int]:
    """The first public send of each issue (of each issue to one list, with `list_id`): (issue_id, send_id).

    The first, so the copy an issue's address shows does not change when it is sent again later. A welcome step's
    send (`welcome`) is no issue of the newsletter: it stays out of the indexes and feeds, but its own page answers,
    since the message's "view online" link points there.
    """
    query = (select(Send.issue_id, func.min(Send.id).label("send_id"))
             .join(MailingList, MailingList.id == Send.list_id)
             .where(Send.status.in_(SENT), MailingList.archive_private.is_(False)))
    if not welcome:
        query = query.where(Send.kind == SendKind.CAMPAIGN.value)
    if list_id is not None:
        query = query.where(Send.list_id == list_id)
    return query.group_by(Send.issue_id)


def _sent_at() -> ColumnElement[datetime]:
    return func.coalesce(Send.started_at, IssueRecord.published_at, IssueRecord.created_at)


def _has_copy() -> ColumnElement[bool]:
    return Send.web_html.is_not(None) | IssueRecord.web_html.is_not(None)


def _entries(session: Session, first: Select[int, int], limit: int) -> list[Entry]:
    chosen = first.subquery()
    rows = session.execute(
        select(IssueRecord.slug, IssueRecord.subject, IssueRecord.preheader, _sent_at(), MailingList.slug,
               MailingList.name, func.coalesce(Send.language, MailingList.language))
        .join(chosen, Send.id == chosen.c.send_id)
        .join(IssueRecord, IssueRecord.id == Send.issue_id)
        .join(MailingList, MailingList.id == Send.list_id)
        .where(_has_copy())
        .order_by(_sent_at().desc(), Send.id.desc()).limit(limit))
    return [Entry(slug, subject, preheader or "", as_utc(when) if when else None, list_slug, list_name,
                  language or DEFAULT_LANGUAGE)
            for slug, subject, preheader, when, list_slug, list_name, language in rows]


def published(session: Session, limit: int = 100) -> list[Entry]:
    """Every public issue once, newest first, named by the list that first published it."""
    return _entries(session, _public_sends(), limit)


def published_to(session: Session, mailing_list: MailingList, limit: int = 100) -> list[Entry]:
    """A public list's issues, newest first."""
    return _entries(session, _public_sends(mailing_list.id), limit)


def public_list(session: Session, slug: str) -> MailingList | None:
    """A list whose archive is public; None alike for a private list and a missing one (no enumeration)."""
    if not plausible_slug(slug):
        return None
    found = session.scalar(select(MailingList).where(MailingList.slug == slug.lower()))
    return found if found is not None and not found.archive_private else None


def lists_with_issues(session: Session) -> list[MailingList]:
    """The public lists that have published something, by name: the sections of the global index."""
    listed = select(Send.list_id).where(Send.status.in_(SENT), Send.kind == SendKind.CAMPAIGN.value)
    return list(session.scalars(select(MailingList).where(MailingList.archive_private.is_(False),
                                                          MailingList.id.in_(listed)).order_by(MailingList.name)))


def archived_copy(session: Session, issue_slug: str, mailing_list: MailingList | None = None) -> Copy | None:
    """The issue as its first public send froze it (to `mailing_list`, when given); None when it is not public.

    Sends planned before sends.web_html existed have no copy of their own: the issue's copy (rendered for no list)
    stands in, as the archive showed it then.
    """
    if not plausible_slug(issue_slug):
        return None
    chosen = _public_sends(mailing_list.id if mailing_list is not None else None, welcome=True).subquery()
    row = session.execute(
        select(Send, IssueRecord, MailingList)
        .join(chosen, Send.id == chosen.c.send_id)
        .join(IssueRecord, IssueRecord.id == Send.issue_id)
        .join(MailingList, MailingList.id == Send.list_id)
        .where(IssueRecord.slug == issue_slug, _has_copy())).first()
    if row is None:
        return None
    send, issue, owner = row
    html = send.web_html or issue.web_html
    assert html is not None  # _has_copy
    subject = merge_tags.with_defaults(send.subject, merge_tags.from_json(send.merge_tags), html=False) \
        if send.subject else issue.subject  # a subject with merge tags reads with their defaults, as the copy does
    return Copy(html, send.language or owner.language or DEFAULT_LANGUAGE, subject, owner)
