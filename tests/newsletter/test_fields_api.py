"""`/api/v1/lists/{slug}/fields`: define and read a list's fields; bad definitions get a JSON error, not a 500."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from mailer.db import session_scope
from newsletter.auth import create_api_token, create_user
from newsletter.models import Role
from newsletter.web.app import create_app
from subscribers import mailing_lists

PASSWORD = "correct horse battery staple"


@pytest.fixture
def clients(db_url: str) -> tuple[TestClient, TestClient]:
    with session_scope() as session:
        mailing_lists.create_list(session, "weekly", "Weekly")
        admin = create_api_token(session, create_user(session, "a@example.com", PASSWORD, Role.ADMIN), "t")
        staff = create_api_token(session, create_user(session, "s@example.com", PASSWORD, Role.STAFF), "t")
    app = create_app()
    return (TestClient(app, headers={"Authorization": f"Bearer {admin}"}),
            TestClient(app, headers={"Authorization": f"Bearer {staff}"}))


def test_define_and_list_fields(clients: tuple[TestClient, TestClient]) -> None:
    admin, staff = clients
    created = admin.post("/api/v1/lists/weekly/fields", json={"name": "Age", "type": "number", "default": "18",
                                                              "subscriber_editable": True})
    assert created.status_code == 201, created.text
    assert created.json() == {"name": "age", "type": "number", "options": [], "default": 18,
                              "subscriber_editable": True}
    assert admin.post("/api/v1/lists/weekly/fields", json={"name": "plan", "type": "oneof",
                                                           "options": ["Free", "Pro"]}).status_code == 201
    listed = staff.get("/api/v1/lists/weekly/fields")
    assert [(f["name"], f["type"]) for f in listed.json()] == [("age", "number"), ("plan", "oneof")]
    assert "/lists/{slug}/fields" in TestClient(create_app()).get("/api/v1/openapi.json").json()["paths"]


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"name": "age"}, 409, "already has a field named 'age'"),
    ({"name": "email"}, 422, "reserved"),
    ({"name": "x", "type": "number", "default": "many"}, 422, "is not a number"),
    ({"name": "x", "type": "colour"}, 422, "type"),
    ({"name": "x", "type": "oneof", "options": ["a"] * 51}, 422, "options"),
    ({"name": "x", "type": "oneof", "options": ["y" * 10_000]}, 422, "at most 100 characters"),
    ({"name": "x" * 65}, 422, "name"),
    ({"name": "x", "default": "d" * 501}, 422, "default"),
    ({"name": ["x"]}, 422, "name"),
])
def test_bad_definitions_get_a_json_error(clients: tuple[TestClient, TestClient], body: dict[str, object],
                                          status: int, message: str) -> None:
    admin, _staff = clients
    assert admin.post("/api/v1/lists/weekly/fields", json={"name": "age"}).status_code == 201
    answer = admin.post("/api/v1/lists/weekly/fields", json=body)
    assert answer.status_code == status and message in answer.json()["error"], answer.text


def test_staff_may_read_but_not_define_and_unknown_lists_are_404(clients: tuple[TestClient, TestClient]) -> None:
    admin, staff = clients
    refused = staff.post("/api/v1/lists/weekly/fields", json={"name": "city"})
    assert refused.status_code == 403 and refused.json()["error"]
    assert admin.get("/api/v1/lists/nope/fields").status_code == 404
    assert admin.post("/api/v1/lists/nope/fields", json={"name": "city"}).status_code == 404
    assert TestClient(create_app()).get("/api/v1/lists/weekly/fields").status_code == 401
    assert staff.get("/api/v1/lists/weekly/fields").json() == []
