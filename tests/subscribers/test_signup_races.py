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
