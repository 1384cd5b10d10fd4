"""One subscriber in the admin (both databases): adding one by hand on stated consent, editing name, values and
subscriptions, their deliveries; and the live segment count on a list's page. Hostile forms included: a missing
CSRF token, a huge or forged field, a staff member who is not an admin, a session revoked meanwhile."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select, text, update

from mailer.db import session_scope
from mailer.store import save_issue
from newsletter.auth import create_user, revoke_sessions
from newsletter.models import Role, User
from newsletter.web.app import create_app
from newsletter.web.ratelimit import reset
from subscribers import audience, mailing_lists, service
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
from tests.mailer.test_issue import EXAMPLE
from tests.support.mailbox import links, messages_to
from worker import reports, sends
from worker.models import Delivery

PASSWORD = "correct horse battery staple"


def csrf(client: TestClient, path: str = "/admin/login") -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text).group(1)  # type: ignore[union-attr]


def signed_in(email: str) -> TestClient:
    client = TestClient(create_app())
    response = client.post("/admin/login", data={"email": email, "password": PASSWORD, "csrf_token": csrf(client)},
                           follow_redirects=False)
    assert response.status_code == 303
    return client


@pytest.fixture
def lists(db_url: str) -> dict[str, int]:
    reset()
    with session_scope() as session:
        create_user(session, "admin@example.com", PASSWORD, Role.ADMIN)
        create_user(session, "staff@example.com", PASSWORD, Role.STAFF)
        weekly = mailing_lists.create_list(session, "weekly", "Weekly", double_opt_in=False)
        other = mailing_lists.create_list(session, "other", "Other", double_opt_in=True)
        session.flush()
        return {"weekly": weekly.id, "other": other.id}


@pytest.fixture
def admin(lists: dict[str, int]) -> TestClient:
    return signed_in("admin@example.com")


def add(client: TestClient, **fields: Any) -> Any:
    data = {"csrf_token": csrf(client, "/admin/subscribers/new"), **fields}
    return client.post("/admin/subscribers/new", data=data)


def subscriber(email: str) -> tuple[Subscriber, dict[str, SubscriptionStatus], list[ConsentEvent]]:
    with session_scope() as session:
        found = session.scalar(select(Subscriber).where(Subscriber.email == email))
        assert found is not None
        statuses = {slug: status for slug, status in session.execute(
            select(MailingList.slug, Subscription.status).join(Subscription, Subscription.list_id == MailingList.id)
            .where(Subscription.subscriber_id == found.id))}
        events = list(session.scalars(select(ConsentEvent).where(ConsentEvent.subscriber_id == found.id)
                                      .order_by(ConsentEvent.id)))
        session.expunge_all()
        return found, statuses, events


def subscriber_count() -> int:
    with session_scope() as session:
        return len(session.scalars(select(Subscriber.id)).all())


def test_add_sends_a_confirmation_even_on_a_list_without_double_opt_in(admin: TestClient,
                                                                        lists: dict[str, int]) -> None:
    page = admin.get("/admin/subscribers/new")
    assert page.status_code == 200 and "Send a confirmation email" in page.text
    added = add(admin, email=" Ann@Example.org ", name="Ann", list_id=[lists["weekly"], lists["other"]],
                mode="confirm")
    assert added.status_code == 200 and "Added to" in added.text and "ann@example.org" in added.text
    found, statuses, events = subscriber("ann@example.org")
    assert found.name == "Ann"
    # staff typing an address is not consent: pending on both, even where the list itself skips confirmation
    assert statuses == {"weekly": SubscriptionStatus.PENDING, "other": SubscriptionStatus.PENDING}
    assert [e.kind for e in events] == [ConsentKind.REQUESTED, ConsentKind.REQUESTED]
    assert all(e.source is ConsentSource.ADMIN and e.detail["by"] == "admin@example.com" for e in events)
    confirmations = messages_to("ann@example.org")
    assert len(confirmations) == 2 and all(links(m, "/confirm/") for m in confirmations)


def test_confirmed_add_needs_where_and_who_and_records_the_staff_member(admin: TestClient,
                                                                       lists: dict[str, int]) -> None:
    for missing, message in (({"vouched_by": "Sam"}, "where they gave their consent"),
                             ({"origin": "paper_form"}, "who vouches"),
                             ({"origin": "paper_form", "vouched_by": "   "}, "who vouches"),
                             ({"origin": "forged-origin", "vouched_by": "Sam"}, "where they gave their consent"),
                             ({"origin": "event", "vouched_by": "S" * 201}, "longer than 200")):
        refused = add(admin, email="bo@example.org", list_id=lists["other"], mode="confirmed", **missing)
        assert refused.status_code == 400 and message in refused.text
        assert 'value="bo@example.org"' in refused.text  # the form keeps what was typed
    assert subscriber_count() == 0 and messages_to("bo@example.org") == []
    added = add(admin, email="bo@example.org", list_id=lists["other"], mode="confirmed", origin="paper_form",
                vouched_by="Sam at the front desk")
    assert added.status_code == 200
    _found, statuses, events = subscriber("bo@example.org")
    assert statuses == {"other": SubscriptionStatus.CONFIRMED}
    assert [e.kind for e in events] == [ConsentKind.REQUESTED, ConsentKind.CONFIRMED]
    assert events[-1].detail == {"note": "a paper form, vouched for by Sam at the front desk",
                                 "by": "admin@example.com", "consent_source": "paper_form",
                                 "vouched_by": "Sam at the front desk"}
    assert messages_to("bo@example.org") == []  # no confirmation, and no welcome (only self sign-ups get one)
    assert "vouched_by: Sam at the front desk" in added.text  # the consent trail on the page says it


def test_suppressed_address_is_refused_with_its_reason(admin: TestClient, lists: dict[str, int]) -> None:
    with session_scope() as session:
        service.suppress(session, "gone@example.org", SuppressionReason.HARD_BOUNCE, source=ConsentSource.SYSTEM)
    for mode in ({"mode": "confirm"}, {"mode": "confirmed", "origin": "verbal", "vouched_by": "Kim"}):
        refused = add(admin, email="GONE@example.org", list_id=lists["weekly"], **mode)
        assert refused.status_code == 400 and "is suppressed (hard bounce)" in refused.text
    assert subscriber_count() == 0 and messages_to("gone@example.org") == []
    bad = add(admin, email="not an address", list_id=lists["weekly"], mode="confirm")
    assert bad.status_code == 400 and "must have an @-sign" in bad.text
    no_token = admin.post("/admin/subscribers/new", data={"email": "x@example.org", "list_id": lists["weekly"],
                                                          "mode": "confirm"})
    assert no_token.status_code == 403 and subscriber_count() == 0
    none = add(admin, email="x@example.org", mode="confirm")
    assert none.status_code == 400 and "at least one list" in none.text
    forged = add(admin, email="x@example.org", list_id=["999999", "-1", "x" * 50, str(2**70)], mode="confirm")
    assert forged.status_code == 400 and "at least one list" in forged.text


def test_existing_subscriber_gets_the_subscription_not_a_second_row(admin: TestClient, lists: dict[str, int]) -> None:
    first = add(admin, email="cy@example.org", list_id=lists["weekly"], mode="confirmed", origin="event",
                vouched_by="Lee")
    assert first.status_code == 200
    again = add(admin, email="cy@example.org", name="Cy", list_id=[lists["weekly"], lists["other"]],
                mode="confirm")
    assert "Added to Other; already on Weekly" in again.text
    assert subscriber_count() == 1
    found, statuses, _events = subscriber("cy@example.org")
    assert statuses == {"weekly": SubscriptionStatus.CONFIRMED, "other": SubscriptionStatus.PENDING}
    assert found.name == "Cy"  # a name added where there was none
    assert len(messages_to("cy@example.org")) == 1  # the confirmation for Other only


def test_subscribe_to_another_list_and_unsubscribe_from_the_page(admin: TestClient, lists: dict[str, int]) -> None:
    add(admin, email="di@example.org", list_id=lists["weekly"], mode="confirmed", origin="verbal", vouched_by="Al")
    found, _statuses, _events = subscriber("di@example.org")
    path = f"/admin/subscribers/{found.id}"
    page = admin.get(path)
    assert 'id="subscribe-to"' in page.text and f'value="{lists["other"]}">Other' in page.text
    token = csrf(admin, path)
    joined = admin.post(f"{path}/subscribe", data={"csrf_token": token, "list_id": lists["other"],
                                                   "mode": "confirmed", "origin": "event", "vouched_by": "Al"})
    assert joined.status_code == 200 and "Added to Other" in joined.text
    left = admin.post(f"{path}/action", data={"csrf_token": token, "action": "unsubscribe",
                                              "list_id": lists["weekly"]})
    assert left.status_code == 200
    _found, statuses, events = subscriber("di@example.org")
    assert statuses == {"weekly": SubscriptionStatus.UNSUBSCRIBED, "other": SubscriptionStatus.CONFIRMED}
    assert events[-1].kind is ConsentKind.UNSUBSCRIBED and events[-1].detail == {"by": "admin@example.com"}
    assert f'value="{lists["weekly"]}">Weekly' in admin.get(path).text  # offered again, with a consent choice
    back = admin.post(f"{path}/action", data={"csrf_token": token, "action": "resubscribe",
                                              "list_id": lists["weekly"]})
    assert back.status_code == 200
    _found, statuses, events = subscriber("di@example.org")
    assert statuses["weekly"] is SubscriptionStatus.CONFIRMED
    assert events[-1].kind is ConsentKind.RESUBSCRIBED and events[-1].detail == {"by": "admin@example.com"}
    no_consent = admin.post(f"{path}/subscribe", data={"csrf_token": token, "list_id": lists["weekly"],
                                                       "mode": "confirmed"})
    assert no_consent.status_code == 400 and "where they gave their consent" in no_consent.text


def test_edit_name_and_values_with_hostile_input(admin: TestClient, lists: dict[str, int]) -> None:
    add(admin, email="ed@example.org", name="Ed", list_id=lists["weekly"], mode="confirm")
    found, _statuses, _events = subscriber("ed@example.org")
    with session_scope() as session:
        session.execute(update(Subscriber).where(Subscriber.id == found.id)
                        .values(attributes={"city": "Berlin", "plan": "pro", "seats": 3, "from csv": "x"}))
    path = f"/admin/subscribers/{found.id}"
    page = admin.get(path)
    assert 'name="field.city" maxlength="1000" value="Berlin"' in page.text
    token = csrf(admin, path)

    def edit(**fields: str) -> Any:
        return admin.post(f"{path}/edit", data={"csrf_token": token, "name": "Ed", "field.city": "Berlin",
                                                "field.plan": "pro", "field.seats": "3", **fields})

    saved = edit(name="  Edward   Teach ", **{"field.city": "Hamburg", "field.plan": "", "field.from csv": ""},
                 new_key="company", new_value="Acme")
    assert saved.status_code == 200 and "Saved" in saved.text
    found, _statuses, events = subscriber("ed@example.org")
    assert found.name == "Edward Teach"
    assert found.attributes == {"city": "Hamburg", "seats": 3, "company": "Acme"}  # seats stays a number
    assert events[-1].kind is ConsentKind.PREFERENCES and events[-1].detail == {
        "changed": ["name", "fields.city", "fields.plan", "fields.from csv", "fields.company"],
        "by": "admin@example.com"}  # a key from a CSV column that is no identifier can still be removed
    hostile = [({"name": "N" * 201}, "name is longer than 200"),
               ({"field.city": "x" * 1001}, "longer than 1000"),
               ({"new_key": "not a key", "new_value": "v"}, "cannot be a field name"),
               ({"new_key": "1st", "new_value": "v"}, "cannot be a field name"),
               ({"new_key": "k" * 65, "new_value": "v"}, "cannot be a field name"),
               ({"field.<script>alert(1)</script>": "v"}, "cannot be a field name"),
               ({f"field.k{n}": "v" for n in range(60)}, "at most 50 fields")]
    for fields, message in hostile:
        refused = edit(**{"name": "Edward Teach", "field.city": "Hamburg", "field.company": "Acme", **fields})
        assert refused.status_code == 400 and message in refused.text, message
        assert "<script>alert" not in refused.text
    assert subscriber("ed@example.org")[0].attributes == {"city": "Hamburg", "seats": 3, "company": "Acme"}
    unchanged = edit(**{"name": "Edward Teach", "field.city": "Hamburg", "field.plan": "", "field.company": "Acme"})
    assert "Nothing changed" in unchanged.text

    no_token = admin.post(f"{path}/edit", data={"name": "Mallory"})
    assert no_token.status_code == 403
    forged = admin.post(f"{path}/edit", data={"name": "Mallory", "csrf_token": "x" * 43})
    assert forged.status_code == 403
    assert subscriber("ed@example.org")[0].name == "Edward Teach"


def test_staff_may_read_but_not_change_and_a_revoked_session_changes_nothing(admin: TestClient,
                                                                            lists: dict[str, int]) -> None:
    add(admin, email="fi@example.org", list_id=lists["weekly"], mode="confirm")
    found, _statuses, _events = subscriber("fi@example.org")
    path = f"/admin/subscribers/{found.id}"
    staff = signed_in("staff@example.com")
    page = staff.get(path)
    assert page.status_code == 200 and 'id="edit-subscriber"' not in page.text
    token = csrf(staff, path)
    assert staff.post(f"{path}/edit", data={"csrf_token": token, "name": "Staff"}).status_code == 403
    assert staff.post("/admin/subscribers/new", data={"csrf_token": token, "email": "new@example.org",
                                                      "list_id": lists["weekly"], "mode": "confirm"}).status_code == 403
    # another admin session, revoked (signed out everywhere) between loading the form and posting it
    other = signed_in("admin@example.com")
    other_token = csrf(other, path)
    with session_scope() as session:
        user = session.scalar(select(User).where(User.email == "admin@example.com"))
        assert user is not None
        revoke_sessions(session, user.id, "signed out everywhere")
    refused = other.post(f"{path}/edit", data={"csrf_token": other_token, "name": "Revoked"},
                         follow_redirects=False)
    assert refused.status_code == 303 and "/admin/login" in refused.headers["location"]
    assert subscriber("fi@example.org")[0].name == "" and subscriber_count() == 1


def test_page_shows_deliveries_with_issue_and_engagement(admin: TestClient, lists: dict[str, int]) -> None:
    add(admin, email="gu@example.org", list_id=lists["weekly"], mode="confirmed", origin="event", vouched_by="Jo")
    found, _statuses, _events = subscriber("gu@example.org")
    with session_scope() as session:
        issue = save_issue(session, EXAMPLE.read_text(), filename=str(EXAMPLE))
        subject = issue.subject
        first = sends.create(session, issue.id, lists["weekly"]).id
    with session_scope() as session:  # run inline after the commit above
        second = sends.create(session, issue.id, lists["weekly"], sends.SendOptions(allow_resend=True)).id
    with session_scope() as session:
        session.execute(update(Delivery).where(Delivery.send_id == first).values(opens=2, machine_opens=1))
        session.execute(update(Delivery).where(Delivery.send_id == second).values(clicks=1))
    page = admin.get(f"/admin/subscribers/{found.id}").text
    assert f'href="/admin/sends/{first}"' in page and f'href="/admin/sends/{second}"' in page
    assert page.count(subject.replace("&", "&amp;").replace("'", "&#39;")) >= 2
    assert "opened \u00d72" in page and "(+1 by machines)" in page and "clicked" in page
    with session_scope() as session:
        newest = reports.subscriber_activity(session, found.id, found.email, limit=1)
        assert [row.delivery.send_id for row in newest.deliveries] == [second] and newest.older_than
        older = reports.subscriber_activity(session, found.id, found.email, limit=1, before=newest.older_than)
        assert [row.delivery.send_id for row in older.deliveries] == [first] and older.older_than is None
    paged = admin.get(f"/admin/subscribers/{found.id}", params={"before": newest.older_than}).text
    assert f'href="/admin/sends/{first}"' in paged and f'href="/admin/sends/{second}"' not in paged
    assert admin.get(f"/admin/subscribers/{found.id}", params={"before": "x"}).status_code == 422


# Live segment count -------------------------------------------------------------------------------------------

@pytest.fixture
def audience_of_three(admin: TestClient, lists: dict[str, int]) -> TestClient:
    with session_scope() as session:
        weekly = session.get(MailingList, lists["weekly"])
        assert weekly is not None
        for address, city in (("a@example.org", "Berlin"), ("b@example.org", "Berlin"), ("c@example.org", "Paris")):
            outcome = service.subscribe(session, weekly, address, source=ConsentSource.ADMIN)
            assert outcome.subscription is not None
            outcome.subscription.subscriber.attributes = {"city": city}
    return admin


def test_live_count_answers_a_count_or_a_located_error(audience_of_three: TestClient) -> None:
    url = "/admin/lists/weekly/segments/count"
    assert audience_of_three.get(url, params={"where": 'fields.city = "Berlin"'}).json() == {"count": 2}
    assert audience_of_three.get(url, params={"where": ""}).json() == {"count": 3}
    wrong = audience_of_three.get(url, params={"where": 'fields.city = "Berlin" and bogus = 1'})
    assert wrong.status_code == 422 and wrong.json()["position"] == 28 and "column 28" in wrong.json()["error"]
    assert wrong.headers["cache-control"] == "no-store"
    huge = audience_of_three.get(url, params={"where": "x" * 20_000})
    assert huge.status_code == 422 and "longer than 2000" in huge.json()["error"]
    deep = audience_of_three.get(url, params={"where": "(" * 500 + "name = 'a'" + ")" * 500})
    assert deep.status_code == 422 and "nested" in deep.json()["error"]
    injected = audience_of_three.get(url, params={"where": "name = '' or 1=1; drop table subscribers --"})
    assert injected.status_code == 422 and injected.json()["position"]
    assert audience_of_three.get("/admin/lists/nope/segments/count").status_code == 404
    anonymous = TestClient(create_app()).get(url, params={"where": "name = 'a'"}, follow_redirects=False)
    assert anonymous.status_code == 303 and "/admin/login" in anonymous.headers["location"]
    staff = signed_in("staff@example.com")  # staff may count (and save segments, as through the API)
    assert staff.get(url, params={"where": 'fields.city = "Paris"'}).json() == {"count": 1}


def test_segment_saved_from_the_list_page(audience_of_three: TestClient) -> None:
    admin = audience_of_three
    page = admin.get("/admin/lists/weekly")
    assert 'id="segment-where"' in page.text and 'data-count-url="/admin/lists/weekly/segments/count"' in page.text
    token = csrf(admin, "/admin/lists/weekly")
    broken = admin.post("/admin/lists/weekly/segments", data={"csrf_token": token, "name": "Berliners",
                                                             "where": 'fields.city = "Ber'})
    assert broken.status_code == 400 and "column" in broken.text
    assert 'value="fields.city = &#34;Ber"' in broken.text  # what was typed comes back, escaped
    saved = admin.post("/admin/lists/weekly/segments", data={"csrf_token": token, "name": "Berliners",
                                                            "where": 'fields.city = "Berlin"'})
    assert saved.status_code == 200 and "Segment Berliners saved" in saved.text
    assert admin.post("/admin/lists/weekly/segments", data={"name": "X", "where": "name = 'x'"}).status_code == 403
    with session_scope() as session:
        [(segment, _slug)] = audience.segments_of(session)
        assert segment.created_by == "admin@example.com"
        assert audience.count(session, segment.list_id, segment.expression) == 2


def test_segment_changed_and_removed_from_the_list_page(audience_of_three: TestClient) -> None:
    """Saving under an existing name changes that segment (the Change link fills the form with it); Remove forgets
    it. Both need the CSRF field, and a broken expression changes nothing."""
    admin = audience_of_three
    token = csrf(admin, "/admin/lists/weekly")
    admin.post("/admin/lists/weekly/segments", data={"csrf_token": token, "name": "Berliners",
                                                    "where": 'fields.city = "Berlin"'})
    page = admin.get("/admin/lists/weekly", params={"edit_segment": "Berliners"})
    assert 'value="Berliners"' in page.text and 'value="fields.city = &#34;Berlin&#34;"' in page.text
    broken = admin.post("/admin/lists/weekly/segments", data={"csrf_token": token, "name": "Berliners",
                                                             "where": "fields.city = "})
    assert broken.status_code == 400 and "column" in broken.text
    changed = admin.post("/admin/lists/weekly/segments", data={"csrf_token": token, "name": "Berliners",
                                                              "where": 'fields.city = "Paris"'})
    assert changed.status_code == 200 and "Segment Berliners changed" in changed.text
    with session_scope() as session:
        [(segment, _slug)] = audience.segments_of(session)
        assert segment.expression == 'fields.city = "Paris"' and segment.created_by == "admin@example.com"
    forged = admin.post("/admin/lists/weekly/segments/remove", data={"name": "Berliners"})
    assert forged.status_code == 403
    removed = admin.post("/admin/lists/weekly/segments/remove", data={"csrf_token": token, "name": "Berliners"})
    assert removed.status_code == 200 and "Segment Berliners removed" in removed.text
    again = admin.post("/admin/lists/weekly/segments/remove", data={"csrf_token": token, "name": "Berliners"})
    assert again.status_code == 200 and "No segment named" in again.text
    with session_scope() as session:
        assert audience.segments_of(session) == []


def test_a_slow_count_is_given_up_not_waited_for(audience_of_three: TestClient, lists: dict[str, int]) -> None:
    """PostgreSQL: the count waits on a lock held elsewhere and its statement timeout ends it; SQLite: the progress
    handler interrupts a count that is past its time (here, a time already over)."""
    with session_scope() as session:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(select(Subscriber.id).with_for_update())  # row locks do not block a count: take more
            session.execute(text("LOCK TABLE subscriptions IN ACCESS EXCLUSIVE MODE"))
            with session_scope() as other:
                with pytest.raises(audience.TooSlow, match=r"longer than 0\.2 s"):
                    audience.count_within(other, lists["weekly"], 'fields.city = "Berlin"', 0.2)
                assert other.scalar(select(MailingList.slug).where(MailingList.id == lists["weekly"])) == "weekly"
        else:  # enough rows for the progress handler to be asked (every 1,000 steps of SQLite's machine)
            ids = [session.scalar(insert(Subscriber).values(email=f"r{n}@example.net", name="", attributes={})
                                  .returning(Subscriber.id)) for n in range(300)]
            session.execute(insert(Subscription), [{"subscriber_id": i, "list_id": lists["weekly"], "source": "t",
                                                    "status": SubscriptionStatus.CONFIRMED} for i in ids])
            with pytest.raises(audience.TooSlow):
                audience.count_within(session, lists["weekly"], 'fields.city = "Berlin"', -1)
            assert audience.count_within(session, lists["weekly"], 'fields.city = "Berlin"', 5) == 2


def test_an_issue_is_sent_to_a_segment_from_the_admin(audience_of_three: TestClient, lists: dict[str, int]) -> None:
    """The issue page's send form names a segment: only its members are in the ledger; a segment of another list
    is refused with a message and makes no send."""
    admin = audience_of_three
    with session_scope() as session:
        weekly, other = session.get(MailingList, lists["weekly"]), session.get(MailingList, lists["other"])
        assert weekly is not None and other is not None
        audience.create_segment(session, weekly, "Berliners", 'fields.city = "Berlin"')
        audience.create_segment(session, other, "Elsewhere", "name = 'nobody'")
        issue_id = save_issue(session, EXAMPLE.read_text(), filename=str(EXAMPLE)).id
    page = admin.get(f"/admin/issues/{issue_id}")
    assert '<optgroup label="Segments of weekly"><option value="Berliners">' in page.text
    token = csrf(admin, f"/admin/issues/{issue_id}")
    wrong = admin.post(f"/admin/issues/{issue_id}/send", data={"csrf_token": token, "list": "weekly",
                                                               "segment": "Elsewhere"})
    assert wrong.status_code == 200 and "No segment named" in wrong.text
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0
        assert reports.sends_of_issue(session, issue_id) == []
    sent = admin.post(f"/admin/issues/{issue_id}/send", data={"csrf_token": token, "list": "weekly",
                                                              "segment": "Berliners"}, follow_redirects=False)
    assert sent.status_code == 303 and "/admin/sends/" in sent.headers["location"]
    with session_scope() as session:
        [send] = reports.sends_of_issue(session, issue_id)
        assert send.segment_expression == 'fields.city = "Berlin"'
        received = set(session.scalars(select(Subscriber.email).join(Delivery, Delivery.subscriber_id == Subscriber.id)
                                       .where(Delivery.send_id == send.id)))
    assert received == {"a@example.org", "b@example.org"}
