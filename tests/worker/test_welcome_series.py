"""The welcome series on the ledger (inline, no broker), on SQLite and PostgreSQL: each step once per subscriber at
its delay, never to someone who left or was suppressed, never twice (repeated or concurrent runs, re-confirmation),
stopped by removal, refused for an unrendered issue; delays parsed strictly; welcome sends swept like any send.

Time is moved by passing `now` to the run (and confirmations are real ones): nothing sleeps.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from mailer.db import new_session, session_scope, utcnow
from mailer.models import IssueRecord
from mailer.store import save_issue
from subscribers import importer, mailing_lists, privacy, service
from subscribers.models import ConsentSource, MailingList, Subscriber, Subscription, SuppressionReason
from tests.support.audience import EXAMPLE, counters, make_audience, send_status
from tests.support.mailbox import outbox_messages
from tests.support.workers import wait_for
from tests.worker.test_workers_e2e import Cluster
from tests.worker.test_workers_e2e import cluster as cluster  # the fixture, used by name
from worker import campaigns, leases, reports, sends, tasks, welcome
from worker.models import Delivery, DeliveryStatus, SendStatus, WelcomeStep
from worker.subscriber_tasks import send_notification

ORIGINAL_SUBJECT = 'subject: "Digital Digest Weekly: chips get greener, passwords get rarer"'


def store_issue(slug: str, subject: str) -> int:
    source = EXAMPLE.read_text().replace(ORIGINAL_SUBJECT, f'subject: "{subject}"\nslug: {slug}', 1)
    with session_scope() as session:
        return save_issue(session, source, filename=f"{slug}.md").id


@pytest.fixture
def weekly(db_url: str) -> int:
    """A list whose three subscribers confirmed long before any step exists (a series must not mail them)."""
    audience = make_audience(3)
    with session_scope() as session:
        session.execute(update(Subscription).values(confirmed_at=utcnow() - timedelta(days=30)))
    return audience.list_id


def add_step(list_id: int, issue_id: int, delay: str, **kwargs: object) -> int:
    with session_scope() as session:
        return sends.add_welcome_step(session, list_id, issue_id, welcome.parse_delay(delay),
                                      **kwargs).send_id  # type: ignore[arg-type]


def join(list_id: int, *emails: str) -> None:
    with session_scope() as session:
        mailing_list = session.get(MailingList, list_id)
        assert mailing_list is not None
        for email in emails:
            service.subscribe(session, mailing_list, email, source=ConsentSource.API, confirmed=True,
                              consent_note="test")


def subscriber_id(email: str) -> int:
    with session_scope() as session:
        found = session.scalar(select(Subscriber.id).where(Subscriber.email == email))
        assert found is not None
        return found


def received() -> Counter[tuple[str, str]]:
    """(address, subject) of every message the outbox holds."""
    return Counter((m["To"].addresses[0].addr_spec, str(m["Subject"])) for m in outbox_messages())


def later(**delta: float) -> datetime:
    return utcnow() + timedelta(**delta)


def test_each_step_reaches_each_new_subscriber_once_at_its_delay(weekly: int) -> None:
    first, second = store_issue("hello", "Hello and welcome"), store_issue("tips", "Three tips")
    now_send = add_step(weekly, first, "0")
    later_send = add_step(weekly, second, "2d")
    join(weekly, "ann@example.com", "bob@example.com")
    assert sends.run_welcome_series() == 2
    assert sends.run_welcome_series() == 0  # run again: nobody twice
    assert received() == Counter({("ann@example.com", "Hello and welcome"): 1,
                                  ("bob@example.com", "Hello and welcome"): 1})
    join(weekly, "cat@example.com")
    assert sends.run_welcome_series(later(days=1)) == 1  # cat's first; the second is not due for anyone yet
    assert sends.run_welcome_series(later(days=2, minutes=1)) == 3  # the second, for all three
    assert sends.run_welcome_series(later(days=2, minutes=2)) == 0
    assert sends.run_welcome_series(later(days=4)) == 0
    assert set(received().values()) == {1} and len(received()) == 6
    # The list's old subscribers (confirmed before the steps existed) got nothing.
    assert not any(address.startswith("c") and address != "cat@example.com" for address, _ in received())
    # A welcome step's send stays running when everything is sent: nothing closes it.
    with session_scope() as session:
        assert leases.close_idle_sends(session) == []
    campaigns.finish_if_complete(later_send)
    assert send_status(now_send) is SendStatus.RUNNING and send_status(later_send) is SendStatus.RUNNING
    with session_scope() as session:
        series = reports.welcome_series(session, weekly)
    assert [(row.position, row.delay, row.counts["sent"]) for row in series] == [(1, "0", 3), (2, "2d", 3)]


def test_concurrent_and_repeated_runs_send_nobody_twice(weekly: int, settings) -> None:
    settings.batch_size = 3
    add_step(weekly, store_issue("hello", "Hello"), "0")
    people = [f"reader{n}@example.com" for n in range(20)]
    join(weekly, *people)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            sends.run_welcome_series()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sends.run_welcome_series()
    assert not errors
    got = received()
    assert sorted(address for address, _ in got) == sorted(people) and set(got.values()) == {1}


def test_who_left_or_was_suppressed_before_the_step_never_gets_it(weekly: int) -> None:
    send_id = add_step(weekly, store_issue("hello", "Hello"), "2d")
    join(weekly, "stays@example.com", "leaves@example.com", "bounced@example.com", "erased@example.com",
         "late@example.com")
    with session_scope() as session:
        service.unsubscribe(session, subscriber_id("leaves@example.com"), weekly, source=ConsentSource.FORM)
        service.suppress(session, "bounced@example.com", SuppressionReason.HARD_BOUNCE, source=ConsentSource.PROVIDER)
        privacy.erase(session, subscriber_id("erased@example.com"), source=ConsentSource.FORM)
    due = later(days=2, minutes=1)
    with session_scope() as session:
        [step] = welcome.steps_of(session, weekly)
        admitted = welcome.admit_due(session, step.id, due)  # admitted, not yet sent
    assert len(admitted) == 2
    with session_scope() as session:  # leaves between the admission and the batch: the batch's re-check skips
        service.unsubscribe(session, subscriber_id("late@example.com"), weekly, source=ConsentSource.FORM)
    sends.run_welcome_series(due)
    assert [address for address, _ in received()] == ["stays@example.com"]
    assert counters(send_id)["skipped"] == 1


def test_reconfirmation_does_not_send_a_step_again(weekly: int) -> None:
    hello = add_step(weekly, store_issue("hello", "Hello"), "0")
    add_step(weekly, store_issue("tips", "Tips"), "1d")
    join(weekly, "back@example.com")
    sends.run_welcome_series()
    sends.run_welcome_series(later(days=1, minutes=1))
    assert len(received()) == 2
    person = subscriber_id("back@example.com")
    with session_scope() as session:
        service.unsubscribe(session, person, weekly, source=ConsentSource.FORM)
    with session_scope() as session:
        assert service.resubscribe(session, person, weekly, source=ConsentSource.FORM).changed
    join(weekly, "back@example.com")  # and signing up again through a form changes nothing either
    for days in (1.5, 3, 10):
        sends.run_welcome_series(later(days=days))
    assert len(received()) == 2 and set(received().values()) == {1}
    assert counters(hello)["planned"] == 1


def test_unrendered_issue_limits_and_bad_times_are_refused(weekly: int) -> None:
    with session_scope() as session:
        draft = IssueRecord(slug="draft", subject="Draft", source="---\nsubject: Draft\n---\nhi")
        session.add(draft)
        session.flush()
        with pytest.raises(sends.SendError, match="not been rendered"):
            sends.add_welcome_step(session, weekly, draft.id, 0)
        with pytest.raises(sends.SendError, match="No such issue"):
            sends.add_welcome_step(session, weekly, 10**12, 0)
    issue = store_issue("hello", "Hello")
    with session_scope() as session:
        for delay in (-1, 366 * 86400):
            with pytest.raises(sends.SendError, match="0 to 365 days"):
                sends.add_welcome_step(session, weekly, issue, delay)
        with pytest.raises(sends.SendError, match="past time"):
            sends.add_welcome_step(session, weekly, issue, 0, since=later(days=1))
        with pytest.raises(sends.SendError, match="past time"):
            sends.add_welcome_step(session, weekly, issue, 0, since=datetime(2020, 1, 1))  # no time zone
    for n in range(welcome.MAX_STEPS):
        add_step(weekly, issue, f"{n}d" if n else "0")
    with session_scope() as session, pytest.raises(sends.SendError, match="most a series may have"):
        sends.add_welcome_step(session, weekly, issue, 3600)
    with session_scope() as session:
        assert len(welcome.steps_of(session, weekly)) == welcome.MAX_STEPS


@pytest.mark.parametrize("raw", ["", " ", "5", "-1d", "+1d", "1.5d", "1d2h", "2 days", "d", "0x10m", "1e3d",
                                 "\u0663d", "\uff11d", "2d\x00", "99999999999999999999d", "9" * 100_000, "367d", "53w",
                                 "8761h", "0d\n1d", None])
def test_hostile_delays_are_refused_with_a_message(raw: str | None) -> None:
    with pytest.raises(welcome.DelayError) as refused:
        welcome.parse_delay(raw)  # type: ignore[arg-type]
    assert len(str(refused.value)) < 200


@pytest.mark.parametrize(("raw", "seconds", "shown"), [("0", 0, "0"), ("30m", 1800, "30m"), ("90m", 5400, "90m"),
                                                       (" 12H ", 43200, "12h"), ("2d", 172800, "2d"),
                                                       ("14d", 1209600, "2w"), ("1w", 604800, "1w"),
                                                       ("45s", 45, "45s"), ("365d", 365 * 86400, "365d")])
def test_delays_are_read_and_shown(raw: str, seconds: int, shown: str) -> None:
    assert welcome.parse_delay(raw) == seconds and welcome.format_delay(seconds) == shown


def test_removing_a_step_stops_its_future_deliveries(weekly: int) -> None:
    issue = store_issue("hello", "Hello")
    waiting = add_step(weekly, issue, "2d")
    admitted = add_step(weekly, store_issue("tips", "Tips"), "0")
    join(weekly, "new@example.com")
    with session_scope() as session:
        step = next(s for s in welcome.steps_of(session, weekly) if s.send_id == admitted)
        assert len(welcome.admit_due(session, step.id)) == 1  # admitted, still pending
    with session_scope() as session:  # position 1 is the one at once, 2 the one after two days
        assert sends.remove_welcome_step(session, weekly, 1).send_id == admitted
        assert sends.remove_welcome_step(session, weekly, 1).send_id == waiting
        with pytest.raises(sends.SendError, match="the series has 0"):
            sends.remove_welcome_step(session, weekly, 1)
    for days in (0, 3):
        assert sends.run_welcome_series(later(days=days)) == 0
    assert received() == Counter()
    assert send_status(waiting) is SendStatus.CANCELLED and counters(admitted)["skipped"] == 1
    with session_scope() as session:
        assert reports.welcome_series(session, weekly) == []


def test_imports_are_welcomed_only_when_asked(weekly: int, tmp_path: Path) -> None:
    add_step(weekly, store_issue("hello", "Hello"), "0")
    for name, welcomed in (("quiet", False), ("loud", True)):
        path = tmp_path / f"{name}.csv"
        path.write_text(f"email,name\n{name}1@example.com,One\n{name}2@example.com,Two\n")
        importer.import_csv(new_session, path, "weekly", confirmed=True, consent_source="sheet", welcome=welcomed)
    sends.run_welcome_series()
    assert sorted(address for address, _ in received()) == ["loud1@example.com", "loud2@example.com"]


def test_backfill_only_when_staff_ask_for_it(weekly: int) -> None:
    send_id = add_step(weekly, store_issue("hello", "Hello"), "1d", since=utcnow() - timedelta(days=60))
    sends.run_welcome_series()
    assert len(received()) == 3  # the three confirmed a month ago (the suppressed ones are not mailed)
    assert counters(send_id)["sent"] == 3


def test_the_series_replaces_the_fixed_welcome(weekly: int) -> None:
    with session_scope() as session:
        mailing_lists.get_list(session, "weekly").welcome_enabled = True
        subscription_id = session.scalar(select(Subscription.id).limit(1))
    assert send_notification.delay("welcome", subscription_id).get() == "sent"
    add_step(weekly, store_issue("hello", "Hello"), "0")
    assert send_notification.delay("welcome", subscription_id).get() == "skipped"
    assert len(outbox_messages()) == 1


def test_a_welcome_send_is_swept_and_never_counts_as_already_sent(weekly: int, settings) -> None:
    issue = store_issue("hello", "Hello")
    send_id = add_step(weekly, issue, "0")
    join(weekly, "a@example.com", "b@example.com")
    with session_scope() as session:
        [step] = welcome.steps_of(session, weekly)
        ids = welcome.admit_due(session, step.id)
    with session_scope() as session:  # a worker claimed the batch and died
        campaigns.claim(session, send_id, ids[0], ids[-1])
        session.execute(update(Delivery).where(Delivery.send_id == send_id)
                        .values(claimed_at=utcnow() - timedelta(seconds=settings.claim_lease_s * 2)))
    with session_scope() as session:
        assert leases.sweep_leases(session, settings.claim_lease_s) == {send_id: ids}
    with session_scope() as session:  # its queue lost too: the sweeper's stalled sends include it
        session.execute(update(Delivery).where(Delivery.send_id == send_id).values(claimed_at=None))
        assert send_id in leases.stalled_sends(session, 0)
    assert tasks.resume_send(send_id) == 1  # what the sweeper does with a stalled send (inline: sent now)
    assert len(received()) == 2 and send_status(send_id) is SendStatus.RUNNING
    with session_scope() as session:  # staff cannot cancel it by hand; the same issue can still go to the list
        with pytest.raises(sends.SendError, match="remove the step"):
            sends.control(session, send_id, sends.SendAction.CANCEL)
        campaign = sends.create(session, issue, weekly, sends.SendOptions(scheduled_at=later(days=1)))
        assert [row.send.id for row in reports.recent_sends(session, 10)] == [campaign.id]
    with session_scope() as session:
        assert session.scalar(select(Delivery.status).where(Delivery.send_id == send_id).limit(1)) \
            is DeliveryStatus.SENT


def test_late_commits_are_caught_within_the_margin(weekly: int) -> None:
    """Each run looks only at confirmations since its last window, less a margin: one stamped before the last run
    but committed after it is still caught within that margin (LATE_COMMIT_MARGIN), and not beyond it."""
    add_step(weekly, store_issue("hello", "Hello"), "0")
    with session_scope() as session:
        session.execute(update(WelcomeStep).values(eligible_from=utcnow() - timedelta(hours=3)))
    join(weekly, "first@example.com")
    assert sends.run_welcome_series() == 1
    join(weekly, "slow@example.com", "stale@example.com")
    with session_scope() as session:
        for email, minutes in (("slow@example.com", 10), ("stale@example.com", 90)):
            session.execute(update(Subscription).where(Subscription.subscriber_id == subscriber_id(email))
                            .values(confirmed_at=utcnow() - timedelta(minutes=minutes)))
    assert sends.run_welcome_series() == 1
    assert sorted(address for address, _ in received()) == ["first@example.com", "slow@example.com"]


@pytest.mark.slow
def test_beat_runs_enqueue_batches_for_real_workers(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a broker: two beat runs at once enqueue the new rows' ranges; two worker processes send each once."""
    cluster.configure(monkeypatch, BATCH_SIZE="50")
    list_id = make_audience(0, pending=0, unsubscribed=0, suppressed=0).list_id
    send_id = add_step(list_id, store_issue("hello", "Hello"), "0")
    people = [f"reader{n}@example.com" for n in range(300)]
    join(list_id, *people)
    cluster.start_worker("alpha")
    cluster.start_worker("beta")
    threads = [threading.Thread(target=tasks.run_welcome_series) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wait_for(lambda: counters(send_id)["sent"] == 300, timeout=90, what="300 welcomes sent", every=0.3)
    assert cluster.standin.counts() == Counter({address: 1 for address in people})
    assert send_status(send_id) is SendStatus.RUNNING
