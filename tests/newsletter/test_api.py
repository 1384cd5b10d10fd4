"""The JSON API as automation uses it: the same rules as the UI, clear JSON errors, and staff limits."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from mailer.db import session_scope
from newsletter.auth import create_api_token, create_user
from newsletter.models import Role
from newsletter.web.app import create_app
from tests.mailer.test_issue import EXAMPLE
from tests.support.mailbox import messages_to

PASSWORD = "correct horse battery staple"


@pytest.fixture
def clients(db_url: str) -> tuple[TestClient, TestClient]:
    with session_scope() as session:
        admin = create_api_token(session, create_user(session, "a@example.com", PASSWORD, Role.ADMIN), "t")
        staff = create_api_token(session, create_user(session, "s@example.com", PASSWORD, Role.STAFF), "t")
    app = create_app()
    return (TestClient(app, headers={"Authorization": f"Bearer {admin}"}),
            TestClient(app, headers={"Authorization": f"Bearer {staff}"}))


def test_openapi_document_describes_only_the_api(clients: tuple[TestClient, TestClient]) -> None:
    spec = TestClient(create_app()).get("/api/v1/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    assert {"/lists", "/subscribers", "/suppressions", "/issues", "/issues/preview", "/sends",
            "/sends/{send_id}", "/sends/{send_id}/{action}"} <= set(spec["paths"])
    assert not any(path.startswith("/admin") for path in spec["paths"])


def test_subscribers_with_double_opt_in_update_unsubscribe_and_suppression(
        clients: tuple[TestClient, TestClient]) -> None:
    admin, staff = clients
    admin.post("/api/v1/lists", json={"slug": "weekly", "name": "Weekly", "double_opt_in": True})
    created = admin.post("/api/v1/subscribers", json={"email": "new@example.org", "list": "weekly", "name": "N"})
    assert created.status_code == 201 and created.json()["subscriptions"] == {"weekly": "pending"}
    assert len(messages_to("new@example.org")) == 1  # the confirmation email, sent after commit
    sub_id = created.json()["id"]
    renamed = admin.patch(f"/api/v1/subscribers/{sub_id}", json={"name": "Newton"})
    assert renamed.json()["name"] == "Newton"
    gone = admin.post(f"/api/v1/subscribers/{sub_id}/unsubscribe", json={"list": "weekly"})
    assert gone.json()["subscriptions"] == {"weekly": "unsubscribed"}
    assert staff.get(f"/api/v1/subscribers/{sub_id}").json()["name"] == "Newton"  # staff may read
    refused = staff.post("/api/v1/subscribers", json={"email": "x@example.org", "list": "weekly"})
    assert refused.status_code == 403 and refused.json()["error"]

    assert admin.post("/api/v1/suppressions", json={"email": "Spam@Example.org", "note": "asked"}).json() == {
        "email": "spam@example.org"}
    blocked = admin.post("/api/v1/subscribers", json={"email": "spam@example.org", "list": "weekly"})
    assert blocked.status_code == 409 and "suppressed" in blocked.json()["error"]
    assert admin.delete("/api/v1/suppressions/spam@example.org").status_code == 204
    again = admin.delete("/api/v1/suppressions/spam@example.org")
    assert again.status_code == 404 and again.json() == {"error": "That address is not suppressed."}
    bad = admin.post("/api/v1/suppressions", json={"email": "not an address"})
    assert bad.status_code == 422 and bad.json()["error"]
    assert admin.get("/api/v1/lists/nope").status_code == 404


def test_sends_schedule_cancel_and_controls(clients: tuple[TestClient, TestClient]) -> None:
    admin, staff = clients
    admin.post("/api/v1/lists", json={"slug": "weekly", "name": "Weekly", "double_opt_in": False})
    admin.post("/api/v1/subscribers", json={"email": "r@example.org", "list": "weekly", "confirmed": True,
                                            "consent_source": "test"})
    issue = staff.post("/api/v1/issues", json={"markdown": EXAMPLE.read_text()})  # staff write issues
    assert issue.status_code == 201
    issue_id = issue.json()["id"]
    naive = staff.post("/api/v1/sends", json={"issue_id": issue_id, "list": "weekly",
                                              "scheduled_at": "2030-01-01T08:00:00"})
    assert naive.status_code == 422 and "time zone" in naive.json()["error"]
    scheduled = staff.post("/api/v1/sends", json={"issue_id": issue_id, "list": "weekly",
                                                  "scheduled_at": "2030-01-01T08:00:00Z"})
    assert scheduled.status_code == 201 and scheduled.json()["status"] == "scheduled"
    assert messages_to("r@example.org") == []  # nothing goes out before its time
    send_id = scheduled.json()["id"]
    assert staff.post(f"/api/v1/sends/{send_id}/cancel").json()["status"] == "cancelled"
    twice = staff.post(f"/api/v1/sends/{send_id}/resume")
    assert twice.status_code == 409 and "is cancelled" in twice.json()["error"]
    unknown = staff.post(f"/api/v1/sends/{send_id}/explode")
    assert unknown.status_code == 422 and unknown.json()["error"]

    now = staff.post("/api/v1/sends", json={"issue_id": issue_id, "list": "weekly"})
    assert now.status_code == 201 and now.json()["status"] == "done"
    assert now.json()["counters"]["sent"] == 1 and len(messages_to("r@example.org")) == 1
    late = staff.post(f"/api/v1/sends/{now.json()['id']}/pause")
    assert late.status_code == 409 and late.json()["error"]
    retried = staff.post(f"/api/v1/sends/{now.json()['id']}/retry-failed")
    assert retried.status_code == 200 and len(messages_to("r@example.org")) == 1  # nobody gets it twice


def test_subscriber_values_read_and_patched_with_hostile_input(clients: tuple[TestClient, TestClient]) -> None:
    admin, staff = clients
    admin.post("/api/v1/lists", json={"slug": "weekly", "name": "Weekly", "double_opt_in": False})
    sub_id = admin.post("/api/v1/subscribers", json={"email": "val@example.org", "list": "weekly"}).json()["id"]
    patched = admin.patch(f"/api/v1/subscribers/{sub_id}", json={"attributes": {"city": "Berlin", "plan": "pro"}})
    assert patched.status_code == 200 and patched.json()["attributes"] == {"city": "Berlin", "plan": "pro"}
    merged = admin.patch(f"/api/v1/subscribers/{sub_id}", json={"name": "Val", "attributes": {"plan": None}})
    assert merged.json()["attributes"] == {"city": "Berlin"} and merged.json()["name"] == "Val"
    read = staff.get(f"/api/v1/subscribers/{sub_id}").json()
    assert read["attributes"] == {"city": "Berlin"} and read["subscriptions"] == {"weekly": "confirmed"}
    for body, message in (({"attributes": {"not a key": "x"}}, "cannot be a field name"),
                          ({"attributes": {"city": "x" * 1001}}, "longer than 1000"),
                          ({"attributes": {f"k{n}": "v" for n in range(51)}}, "at most 50 fields"),
                          ({"attributes": {"city": {"nested": 1}}}, "attributes.city"),
                          ({"name": "N" * 201}, "name")):
        refused = admin.patch(f"/api/v1/subscribers/{sub_id}", json=body)
        assert refused.status_code == 422 and message in refused.json()["error"], body
    assert staff.patch(f"/api/v1/subscribers/{sub_id}", json={"name": "Staff"}).status_code == 403
    assert admin.get(f"/api/v1/subscribers/{sub_id}").json()["attributes"] == {"city": "Berlin"}
    assert admin.patch(f"/api/v1/subscribers/{2**70}", json={"name": "X"}).status_code in (404, 422)
