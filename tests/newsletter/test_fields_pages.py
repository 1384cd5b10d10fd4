"""Custom fields on the preferences page (what the subscriber may edit) and on the admin's list page."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from mailer.db import session_scope
from newsletter.auth import create_user
from newsletter.models import Role
from subscribers import fields, mailing_lists, service
from subscribers.models import ConsentEvent, ConsentKind, ConsentSource, Subscriber
from subscribers.tokens import Purpose, link
from tests.newsletter.test_access import PASSWORD as ADMIN_PASSWORD
from tests.newsletter.test_access import sign_in
from tests.newsletter.test_public import client, csrf  # noqa: F401 (client is a fixture)


@pytest.fixture
def person(client: TestClient) -> tuple[str, int]:  # noqa: F811
    """A subscriber of weekly (not of offers), and the path of their preferences page."""
    with session_scope() as session:
        weekly, offers = mailing_lists.get_list(session, "weekly"), mailing_lists.get_list(session, "offers")
        fields.define_field(session, weekly, "age", "number", editable=True)
        fields.define_field(session, weekly, "born", "date", editable=True)
        fields.define_field(session, weekly, "vip", "yesno", editable=True)
        fields.define_field(session, weekly, "plan", "oneof", options=["Free", "Pro"], editable=True)
        fields.define_field(session, weekly, "city", "text", editable=True)
        fields.define_field(session, weekly, "score", "number")  # staff only
        fields.define_field(session, offers, "coupon", "text", editable=True)  # a list they are not on
        sub = service.subscribe(session, weekly, "fields@example.com", source=ConsentSource.ADMIN, confirmed=True,
                                consent_note="test").subscription
        assert sub is not None
        subscriber_id = sub.subscriber_id
    return link(Purpose.PREFERENCES, subscriber_id).removeprefix("http://testserver"), subscriber_id


def _attributes(subscriber_id: int) -> dict[str, object]:
    with session_scope() as session:
        subscriber = session.get(Subscriber, subscriber_id)
        assert subscriber is not None
        return dict(subscriber.attributes)


def _save(client: TestClient, path: str, data: dict[str, str | list[str]]):  # noqa: F811
    return client.post(path, data={"csrf_token": csrf(client, path), "action": "fields", **data})


def test_the_page_offers_typed_inputs_for_the_editable_fields_only(client: TestClient,  # noqa: F811
                                                                   person: tuple[str, int]) -> None:
    path, _subscriber_id = person
    page = client.get(path).text
    assert 'type="number" id="field-age" name="field.age"' in page
    assert 'type="date" id="field-born"' in page and 'type="checkbox" id="field-vip"' in page
    assert '<select id="field-plan" name="field.plan"' in page and '<option value="Pro">' in page
    assert "field.score" not in page and "field.coupon" not in page


def test_valid_values_are_stored_typed_with_a_consent_event(client: TestClient,  # noqa: F811
                                                            person: tuple[str, int]) -> None:
    path, subscriber_id = person
    saved = _save(client, path, {"field.age": "41", "field.born": "1985-03-02", "field.vip": ["no", "yes"],
                                 "field.plan": "Pro", "field.city": " Oslo "})
    assert saved.status_code == 200 and "Saved." in saved.text
    assert _attributes(subscriber_id) == {"age": 41, "born": "1985-03-02", "vip": True, "plan": "Pro",
                                          "city": "Oslo"}
    page = client.get(path).text
    assert 'value="41"' in page and "checked" in page.split('id="field-vip"')[1].split(">")[0]
    cleared = _save(client, path, {"field.vip": "no", "field.city": ""})
    assert cleared.status_code == 200 and _attributes(subscriber_id)["vip"] is False
    assert "city" not in _attributes(subscriber_id)
    with session_scope() as session:
        events = session.scalars(select(ConsentEvent).where(ConsentEvent.kind == ConsentKind.PREFERENCES)
                                 .order_by(ConsentEvent.id)).all()
        assert [e.detail["changed"] for e in events] == [
            ["fields.age", "fields.born", "fields.vip", "fields.plan", "fields.city"], ["fields.vip", "fields.city"]]
        assert all(e.source is ConsentSource.FORM for e in events)


def test_wrong_types_are_shown_on_the_page_and_only_the_good_values_kept(client: TestClient,  # noqa: F811
                                                                         person: tuple[str, int]) -> None:
    path, subscriber_id = person
    answer = _save(client, path, {"field.age": "forty<script>", "field.born": "2023-02-30", "field.plan": "Gold",
                                  "field.city": "Rome"})
    assert answer.status_code == 400 and "Some values were not saved." in answer.text
    assert "Enter a number, such as 42 or 3.5." in answer.text and "Enter a date as YYYY-MM-DD." in answer.text
    assert "Choose one of the options." in answer.text and 'aria-invalid="true"' in answer.text
    assert 'value="forty&lt;script&gt;"' in answer.text  # shown back to fix, escaped
    assert _attributes(subscriber_id) == {"city": "Rome"}


def test_forged_names_and_other_lists_fields_are_not_editable(client: TestClient,  # noqa: F811
                                                              person: tuple[str, int]) -> None:
    path, subscriber_id = person
    answer = _save(client, path, {"field.score": "100", "field.coupon": "FREE", "field.email": "x@evil.example",
                                  "field.__class__": "1", "field." + "z" * 5000: "1", "field.city": "Lima"})
    assert answer.status_code == 400
    assert _attributes(subscriber_id) == {"city": "Lima"}
    with session_scope() as session:
        subscriber = session.get(Subscriber, subscriber_id)
        assert subscriber is not None and subscriber.email == "fields@example.com"


def test_huge_and_repeated_values(client: TestClient, person: tuple[str, int]) -> None:  # noqa: F811
    path, subscriber_id = person
    huge = _save(client, path, {"field.city": "x" * 5000})
    assert huge.status_code == 400 and "That is too long." in huge.text
    assert _attributes(subscriber_id) == {}
    repeated = _save(client, path, {"field.city": ["Oslo", "Bergen"], "field.age": ["1", "2", "3"]})
    assert repeated.status_code == 200 and _attributes(subscriber_id) == {"city": "Bergen", "age": 3}


def test_without_the_csrf_token_nothing_changes(client: TestClient, person: tuple[str, int]) -> None:  # noqa: F811
    path, subscriber_id = person
    refused = client.post(path, data={"action": "fields", "field.city": "Oslo"})
    assert refused.status_code == 403 and _attributes(subscriber_id) == {}


def test_an_unsubscribed_list_fields_are_not_offered(client: TestClient, person: tuple[str, int]) -> None:  # noqa: F811
    path, subscriber_id = person
    with session_scope() as session:
        service.unsubscribe(session, subscriber_id, None, source=ConsentSource.FORM)
    assert "field.age" not in client.get(path).text
    assert _save(client, path, {"field.age": "3"}).status_code == 400 and _attributes(subscriber_id) == {}
    assert re.search(r"Your details", client.get(path).text) is None


@pytest.fixture
def admin(client: TestClient) -> TestClient:  # noqa: F811
    with session_scope() as session:
        create_user(session, "admin@example.com", ADMIN_PASSWORD, Role.ADMIN)
        create_user(session, "staff@example.com", ADMIN_PASSWORD, Role.STAFF)
    sign_in(client, "admin@example.com")
    return client


def _weekly_fields() -> list[tuple[str, str, list[str], object, bool]]:
    with session_scope() as session:
        return [(f.name, f.type, list(f.options), f.default, f.subscriber_editable)
                for f in fields.fields_of(session, mailing_lists.get_list(session, "weekly").id)]


def test_admin_adds_lists_and_removes_fields_on_the_list_page(admin: TestClient) -> None:
    token = csrf(admin, "/admin/lists/weekly")
    added = admin.post("/admin/lists/weekly/fields", data={
        "csrf_token": token, "field_name": "plan", "field_type": "oneof", "field_options": "Free\r\n<b>Pro</b>\r\n",
        "field_default": "free", "field_editable": "1"})
    assert added.status_code == 200 and "Field plan added" in added.text  # after the redirect
    assert _weekly_fields() == [("plan", "oneof", ["Free", "<b>Pro</b>"], "Free", True)]
    assert "Free, &lt;b&gt;Pro&lt;/b&gt;" in added.text
    refused = admin.post("/admin/lists/weekly/fields", data={"csrf_token": token, "field_name": "age",
                                                             "field_type": "number", "field_default": "old"})
    assert refused.status_code == 400 and "fields.age: &#39;old&#39; is not a number" in refused.text
    twice = admin.post("/admin/lists/weekly/fields", data={"csrf_token": token, "field_name": "plan"})
    assert twice.status_code == 400 and "already has a field named" in twice.text
    removed = admin.post("/admin/lists/weekly/fields/remove", data={"csrf_token": token, "field_name": "plan"})
    assert removed.status_code == 200 and "Field removed" in removed.text and _weekly_fields() == []
    ghost = admin.post("/admin/lists/weekly/fields/remove", data={"csrf_token": token, "field_name": "<ghost>"})
    assert ghost.status_code == 404 and "&lt;ghost&gt;" in ghost.text


def test_admin_field_forms_need_csrf_and_an_admin(admin: TestClient) -> None:
    refused = admin.post("/admin/lists/weekly/fields", data={"field_name": "city"})
    assert refused.status_code == 403 and _weekly_fields() == []
    staff = TestClient(admin.app)
    sign_in(staff, "staff@example.com")
    assert "Add field" not in staff.get("/admin/lists/weekly").text
    token = csrf(staff, "/admin/lists/weekly")
    assert staff.post("/admin/lists/weekly/fields", data={"csrf_token": token, "field_name": "city"}
                      ).status_code == 403
    assert _weekly_fields() == []
