"""Who a send reaches, and who a segment counts: one definition, used by the plan and by every count on screen.

A recipient is a confirmed subscriber of the list who is not erased and not suppressed, and, for a segment, matches
its expression. The plan's INSERT .. SELECT and the live count while typing use these same conditions, so the number
staff see before sending is the number the ledger plans.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import ColumnElement, exists, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from mailer.db import utcnow
from subscribers import fields
from subscribers.models import MailingList, Segment, Subscriber, Subscription, SubscriptionStatus, Suppression
from subscribers.segments import compile_segment
from subscribers.service import ServiceError

MAX_SEGMENT_NAME = 100


def conditions(list_id: int, expression: str | None = None, now: datetime | None = None,
               field_types: Mapping[str, str] | None = None) -> list[ColumnElement[bool]]:
    """WHERE clauses over Subscription joined with Subscriber (raises SegmentError for a bad expression).
    `field_types` (fields.types_of) makes a number or date field compare as one."""
    clauses: list[ColumnElement[bool]] = [
        Subscription.list_id == list_id, Subscription.status == SubscriptionStatus.CONFIRMED,
        Subscriber.erased_at.is_(None), ~exists().where(Suppression.email == Subscriber.email)]
    if expression:
        clauses.append(compile_segment(expression, now or utcnow(), field_types))
    return clauses


def count(session: Session, list_id: int, expression: str | None = None) -> int:
    return int(session.scalar(select(func.count()).select_from(Subscription)
                              .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
                              .where(*conditions(list_id, expression,
                                                 field_types=fields.types_of(session, list_id)))) or 0)


class TooSlow(ServiceError):
    """A count that did not finish in its time: the expression is too costly to count while typing."""


def count_within(session: Session, list_id: int, expression: str | None, seconds: float) -> int:
    """`count`, given up after `seconds` (the admin's live count: a costly expression must not hold a worker).

    PostgreSQL gets a statement timeout inside a savepoint, so the caller's transaction goes on after one; SQLite
    gets a progress handler that interrupts the statement once the time has passed.
    """
    if expression:
        # a located SegmentError before any time is spent
        compile_segment(expression, field_types=fields.types_of(session, list_id))
    connection = session.connection()
    try:
        with session.begin_nested():
            if connection.dialect.name == "postgresql":
                previous = session.scalar(select(func.current_setting("statement_timeout")))
                session.execute(select(func.set_config("statement_timeout", str(max(1, int(seconds * 1000))),
                                                       True)))
                found = count(session, list_id, expression)
                session.execute(select(func.set_config("statement_timeout", previous, True)))
                return found
            return _count_sqlite(session, list_id, expression, seconds)
    except OperationalError as exc:
        if "cancel" in str(exc).lower() or "interrupt" in str(exc).lower():
            raise TooSlow(f"Counting took longer than {seconds:g} s; the segment is still valid, it is only "
                          "costly to count while typing.") from exc
        raise


def _count_sqlite(session: Session, list_id: int, expression: str | None, seconds: float) -> int:
    raw = session.connection().connection.driver_connection
    assert raw is not None  # a checked-out connection
    deadline = time.monotonic() + seconds
    raw.set_progress_handler(lambda: int(time.monotonic() > deadline), 1_000)
    try:
        return count(session, list_id, expression)
    finally:
        raw.set_progress_handler(None, 0)


def _checked(session: Session, mailing_list: MailingList, expression: str) -> str:
    """The expression, refused now with its location if it is broken, not at send time."""
    if not expression.strip():
        raise ServiceError("A segment needs an expression.")
    compile_segment(expression, field_types=fields.types_of(session, mailing_list.id))
    return expression.strip()


def create_segment(session: Session, mailing_list: MailingList, name: str, expression: str,
                   created_by: str = "") -> Segment:
    name = name.strip()
    if not name or len(name) > MAX_SEGMENT_NAME:
        raise ServiceError(f"A segment needs a name of 1 to {MAX_SEGMENT_NAME} characters.")
    expression = _checked(session, mailing_list, expression)
    if find_segment(session, mailing_list.id, name) is not None:
        raise ServiceError(f"The list '{mailing_list.slug}' already has a segment named '{name}'.")
    segment = Segment(list_id=mailing_list.id, name=name, expression=expression, created_by=created_by)
    session.add(segment)
    session.flush()
    return segment


def find_segment(session: Session, list_id: int, name: str) -> Segment | None:
    return session.scalar(select(Segment).where(Segment.list_id == list_id, Segment.name == name))


def get_segment(session: Session, list_id: int, name: str) -> Segment:
    segment = find_segment(session, list_id, name)
    if segment is None:
        raise ServiceError(f"No segment named '{name}' on this list.")
    return segment


def change_segment(session: Session, mailing_list: MailingList, name: str, expression: str) -> Segment:
    """A saved segment's new expression. Sends already made keep the one they were made with (sends freeze it)."""
    segment = get_segment(session, mailing_list.id, name)
    segment.expression = _checked(session, mailing_list, expression)
    return segment


def delete_segment(session: Session, list_id: int, name: str) -> None:
    """Forget a saved segment; a send made with it keeps its frozen expression (its segment_id becomes NULL)."""
    session.delete(get_segment(session, list_id, name))
    session.flush()


def segments_of(session: Session, list_id: int | None = None) -> list[tuple[Segment, str]]:
    """Segments with their list's slug, by list then name."""
    query = select(Segment, MailingList.slug).join(MailingList).order_by(MailingList.slug, Segment.name)
    if list_id is not None:
        query = query.where(Segment.list_id == list_id)
    return [(segment, slug) for segment, slug in session.execute(query)]

