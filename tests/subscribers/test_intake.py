"""The set-based consent rules the public forms write with (subscribers.intake.signup_many, service.confirm_many,
service.unsubscribe_many), on SQLite and PostgreSQL: a group gives each request what it would get alone, including
the awkward ones (suppressed, erased, repeated in the group, already there), in the same few statements whatever
the group's size."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, func, select

from mailer.db import get_engine, session_scope
from subscribers import mailing_lists, privacy, service
from subscribers.intake import SignUp, signup_many
from subscribers.models import (
    ConsentEvent,
    ConsentKind,
    ConsentSource,
    MailingList,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    SuppressionReason,
)
from subscribers.service import Confirmation, Confirmed, Leave, NotificationKind
from tests.support.mailbox import messages_to
from worker.notifications import notify_now


@contextmanager
def statements() -> Iterator[list[str]]:
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(get_engine(), "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(get_engine(), "before_cursor_execute", record)


def lists(**options: Any) -> tuple[MailingList, MailingList]:
    with session_scope() as session:
        weekly = mailing_lists.create_list(session, "weekly", "Weekly", **options)
        direct = mailing_lists.create_list(session, "direct", "Direct", double_opt_in=False)
        direct.welcome_enabled = True
        session.flush()
        return weekly, direct  # detached, columns loaded: as the page cache hands them out


def events(kind: ConsentKind) -> list[tuple[int | None, int | None, dict[str, Any]]]:
    with session_scope() as session:
        return [(e.subscriber_id, e.list_id, e.detail) for e in session.scalars(
            select(ConsentEvent).where(ConsentEvent.kind == kind).order_by(ConsentEvent.id))]


def status(email: str, mailing_list: MailingList) -> SubscriptionStatus | None:
    with session_scope() as session:
        return session.scalar(select(Subscription.status).join(Subscription.subscriber)
                              .where(Subscriber.email == email, Subscription.list_id == mailing_list.id))


def in_one_transaction(write: Callable[..., Any], *args: Any) -> Any:
    with session_scope() as session:
        return write(session, *args)


def test_new_sign_ups_in_five_statements_however_many(db_url: str) -> None:
    weekly, _ = lists()
    counts = []
    for size in (3, 40):
        group = [SignUp(weekly, f"n{size}-{i}@example.com", f"Reader {i}", "192.0.2.1", "ua") for i in range(size)]
        with statements() as seen:
            results = in_one_transaction(signup_many, group)
        counts.append(len(seen))
        assert [[n.kind for n in r.notify] for r in results] == [[NotificationKind.CONFIRM]] * size
        assert len({r.notify[0].subscription_id for r in results}) == size
    assert counts[0] == counts[1] <= 5, counts
    assert status("n40-39@example.com", weekly) is SubscriptionStatus.PENDING
    requested = events(ConsentKind.REQUESTED)
    assert len(requested) == 43 and requested[0][2] == {"double_opt_in": True}


def test_a_group_with_every_awkward_case(db_url: str) -> None:
    weekly, direct = lists()
    with session_scope() as session:
        service.suppress(session, "blocked@example.com", SuppressionReason.COMPLAINT, source=ConsentSource.ADMIN)
        service.subscribe(session, weekly, "known@example.com", source=ConsentSource.ADMIN, confirmed=True,
                          consent_note="test")
        service.subscribe(session, direct, "nameless@example.com", source=ConsentSource.ADMIN, confirmed=True,
                          consent_note="test")
    group = [
        SignUp(weekly, "blocked@example.com"),                    # suppressed: refused, nothing written
        SignUp(weekly, "known@example.com"),                      # confirmed already: nothing to send
        SignUp(weekly, "twice@example.com", "Ann"),               # new, and
        SignUp(weekly, "twice@example.com", "Ann"),               # the same again in the same group
        SignUp(direct, "single@example.com", consent_note="embedded form on https://blog.example.org"),
        SignUp(weekly, "nameless@example.com", "  Nora   Name "),  # known person, new to this list, no name yet
    ]
    results = in_one_transaction(signup_many, group)
    assert [r.refused for r in results] == [True, False, False, False, False, False]
    assert [[n.kind for n in r.notify] for r in results] == [
        [], [], [NotificationKind.CONFIRM], [], [NotificationKind.WELCOME], [NotificationKind.CONFIRM]]
    with session_scope() as session:
        assert session.scalar(select(func.count()).where(Subscriber.email == "blocked@example.com")) == 0
        assert session.scalar(select(Subscriber.name).where(Subscriber.email == "nameless@example.com")) \
            == "Nora Name"
    assert status("twice@example.com", weekly) is SubscriptionStatus.PENDING
    assert status("single@example.com", direct) is SubscriptionStatus.CONFIRMED
    assert status("known@example.com", weekly) is SubscriptionStatus.CONFIRMED
    confirmed = [e for e in events(ConsentKind.CONFIRMED) if e[2].get("note", "").startswith("embedded")]
    assert confirmed and confirmed[0][2]["double_opt_in"] is False
    asked = [e for e in events(ConsentKind.REQUESTED) if e[1] == weekly.id and "note" not in e[2]]
    assert len(asked) == 2  # "twice" once, "nameless" once; "known" asked for nothing new


def people(weekly: MailingList, *emails: str) -> list[int]:
    ids = []
    with session_scope() as session:
        for email in emails:
            outcome = service.subscribe(session, weekly, email, source=ConsentSource.FORM)
            assert outcome.subscription is not None
            ids.append(outcome.subscription.subscriber_id)
    return ids


def test_confirmations_in_a_group(db_url: str) -> None:
    weekly, _ = lists()
    with session_scope() as session:
        session.get(MailingList, weekly.id).welcome_enabled = True  # type: ignore[union-attr]
    pending, done, blocked, erased, gone = people(weekly, *(f"{n}@example.com" for n in
                                                            ("pending", "done", "blocked", "erased", "gone")))
    with session_scope() as session:
        service.confirm(session, done, weekly.id)
        service.suppress(session, "blocked@example.com", SuppressionReason.HARD_BOUNCE, source=ConsentSource.ADMIN)
        privacy.erase(session, erased, source=ConsentSource.ADMIN)
        session.execute(Subscription.__table__.delete().where(Subscription.subscriber_id == gone))
    group = [Confirmation(pending, weekly.id, "192.0.2.7", "phone"), Confirmation(pending, weekly.id),
             Confirmation(done, weekly.id), Confirmation(blocked, weekly.id), Confirmation(erased, weekly.id),
             Confirmation(gone, weekly.id), Confirmation(10**9, weekly.id)]
    with statements() as seen:
        results = in_one_transaction(service.confirm_many, group)
    assert len(seen) <= 4, seen
    assert [r.state for r in results] == [Confirmed.NOW, Confirmed.ALREADY, Confirmed.ALREADY, Confirmed.REFUSED,
                                          Confirmed.NOBODY, Confirmed.GONE, Confirmed.NOBODY]
    assert results[0].email == "pending@example.com"
    assert [n.kind for n in results[0].notify] == [NotificationKind.WELCOME]
    assert status("pending@example.com", weekly) is SubscriptionStatus.CONFIRMED
    assert status("blocked@example.com", weekly) is SubscriptionStatus.PENDING
    confirmations = [e for e in events(ConsentKind.CONFIRMED) if e[0] == pending]
    assert len(confirmations) == 1  # the same link twice in one group: one consent record


def test_unsubscribes_in_a_group(db_url: str) -> None:
    weekly, direct = lists()
    one, everywhere, erased, left = people(weekly, "one@example.com", "all@example.com", "erased@example.com",
                                           "left@example.com")
    with session_scope() as session:
        for subscriber_id in (one, everywhere):
            service.confirm(session, subscriber_id, weekly.id)
        service.subscribe(session, direct, "one@example.com", source=ConsentSource.FORM)
        service.subscribe(session, direct, "all@example.com", source=ConsentSource.FORM)
        privacy.erase(session, erased, source=ConsentSource.ADMIN)
        service.unsubscribe(session, left, weekly.id, source=ConsentSource.FORM)
    group = [Leave(one, weekly.id, detail={"method": "one-click"}), Leave(everywhere, None, "192.0.2.9"),
             Leave(erased, weekly.id), Leave(left, weekly.id), Leave(one, weekly.id, detail={"method": "page"})]
    with statements() as seen:
        changed = in_one_transaction(lambda s, g: service.unsubscribe_many(s, g, source=ConsentSource.FORM), group)
    assert len(seen) <= 2, seen  # the update and the consent records (on PostgreSQL a COPY, which this list misses)
    assert changed == [0, 2, 0, 0, 1]  # the repeat of "one" is counted once, on the later request
    assert status("one@example.com", weekly) is SubscriptionStatus.UNSUBSCRIBED
    assert status("one@example.com", direct) is SubscriptionStatus.CONFIRMED
    assert status("all@example.com", direct) is SubscriptionStatus.UNSUBSCRIBED
    left_events = [e for e in events(ConsentKind.UNSUBSCRIBED) if e[0] in (one, everywhere)]
    assert sorted((e[0], e[1]) for e in left_events) == sorted(
        [(one, weekly.id), (everywhere, weekly.id), (everywhere, direct.id)])
    assert [e[2].get("method") for e in left_events if e[0] == one] == ["page"]


def test_a_groups_emails_are_one_message_and_reach_each_person(db_url: str) -> None:
    weekly, _ = lists()
    results = in_one_transaction(signup_many, [SignUp(weekly, f"g{n}@example.com") for n in range(3)])
    notify_now(item for result in results for item in result.notify)  # one send_notifications task for three
    for n in range(3):
        [message] = messages_to(f"g{n}@example.com")
        assert "confirm" in message["Subject"].lower()


def test_what_a_request_sends_is_stored_as_sent_or_cleaned_never_failing_the_group(db_url: str) -> None:
    """The consent records of a group are streamed with COPY on PostgreSQL: tabs, newlines, backslashes and quotes in
    what a client sent survive it, and a NUL (which PostgreSQL refuses in text) is dropped, not the whole group."""
    weekly, _ = lists()
    ids = people(weekly, "odd@example.com", "plain@example.com")
    awkward = "tab\there\\back \"quoted\"\nnew line \x00nul"
    changed = in_one_transaction(lambda s, g: service.unsubscribe_many(s, g, source=ConsentSource.FORM), [
        Leave(ids[0], weekly.id, "192.0.2.1\x00", awkward, {"note": awkward}), Leave(ids[1], weekly.id)])
    assert changed == [1, 1]
    with session_scope() as session:
        event = session.scalars(select(ConsentEvent).where(ConsentEvent.subscriber_id == ids[0],
                                                           ConsentEvent.kind == ConsentKind.UNSUBSCRIBED)).one()
    assert event.user_agent == awkward.replace("\x00", "") and event.ip == "192.0.2.1"
    assert event.detail == {"note": awkward}
