"""Sign-ups of one new address arriving at the same moment (a form posted many times, two lists' forms at once) on
real PostgreSQL: INSERT ... ON CONFLICT settles who made the person and the subscription, with no error, one
confirmation email, and one consent record of the request."""

from __future__ import annotations

import threading

from sqlalchemy import func, select

from mailer.db import session_scope
from subscribers import mailing_lists, service
from subscribers.models import ConsentEvent, ConsentKind, ConsentSource, Subscriber, Subscription
from subscribers.service import NotificationKind, Outcome


def _at_once(jobs: list[tuple[str, str]]) -> list[Outcome | BaseException]:
    gate = threading.Barrier(len(jobs))
    results: list[Outcome | BaseException] = []

    def sign_up(slug: str, email: str) -> None:
        try:
            with session_scope() as session:
                mailing_list = mailing_lists.get_list(session, slug)
                gate.wait(timeout=30)
                results.append(service.subscribe(session, mailing_list, email, "Ann", source=ConsentSource.FORM))
        except BaseException as exc:  # collected: the test shows every failure
            results.append(exc)

    threads = [threading.Thread(target=sign_up, args=job) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _count(model: type, *where: object) -> int:
    with session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def test_one_address_posted_twelve_times_at_once(pg_url: str) -> None:
    with session_scope() as session:
        mailing_lists.create_list(session, "weekly", "Weekly")
    results = _at_once([("weekly", "Same@Example.com")] * 12)  # within the pool (15): all hold a connection
    assert not [r for r in results if isinstance(r, BaseException)], results
    notices = [n for r in results if isinstance(r, Outcome) for n in r.notify]
    assert [n.kind for n in notices] == [NotificationKind.CONFIRM]
    assert _count(Subscriber) == 1 and _count(Subscription) == 1
    assert _count(ConsentEvent, ConsentEvent.kind == ConsentKind.REQUESTED) == 1


def test_one_new_address_on_two_lists_at_once(pg_url: str) -> None:
    with session_scope() as session:
        mailing_lists.create_list(session, "weekly", "Weekly")
        mailing_lists.create_list(session, "offers", "Offers")
    results = _at_once([("weekly", "pair@example.com"), ("offers", "pair@example.com")] * 5)
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert _count(Subscriber) == 1 and _count(Subscription) == 2
    assert len([n for r in results if isinstance(r, Outcome) for n in r.notify]) == 2
    with session_scope() as session:
        assert session.scalar(select(Subscriber.name)) == "Ann"


def test_a_link_confirmed_twice_at_the_same_moment_confirms_once(db_url: str) -> None:
    """Both requests read "pending"; the first commits while the second waits to write. The second must find the
    subscription confirmed: no second consent record, no second welcome email (both databases)."""
    with session_scope() as session:
        mailing_list = mailing_lists.create_list(session, "weekly", "Weekly")
        mailing_list.welcome_enabled = True
        outcome = service.subscribe(session, mailing_list, "twice@example.com", "Ann", source=ConsentSource.FORM)
        subscriber_id, list_id = outcome.subscription.subscriber_id, mailing_list.id
    second: list[Outcome | BaseException] = []
    with session_scope() as first:
        assert service.confirm(first, subscriber_id, list_id).changed  # written, not committed yet

        def click_again() -> None:
            try:
                with session_scope() as session:
                    second.append(service.confirm(session, subscriber_id, list_id))
            except BaseException as exc:  # shown by the assertion below
                second.append(exc)

        other = threading.Thread(target=click_again)
        other.start()
        other.join(timeout=0.5)  # it has read "pending" and waits for the first one's row (or write lock)
        assert other.is_alive()
    other.join(timeout=30)  # the first committed when its block ended
    assert len(second) == 1 and isinstance(second[0], Outcome), second
    assert not second[0].changed and not second[0].notify
    assert second[0].subscription.status.value == "confirmed"
    assert _count(ConsentEvent, ConsentEvent.kind == ConsentKind.CONFIRMED) == 1
