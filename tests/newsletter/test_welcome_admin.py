"""The welcome series on the list's admin page: steps with their figures, add and remove forms behind CSRF and the
admin role; forged fields get a message, never a 500; the archive's index leaves welcome emails out."""

from __future__ import annotations

import re
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from mailer.db import session_scope
from mailer.models import IssueRecord
from mailer.store import save_issue
from newsletter.auth import create_user
from newsletter.models import Role
from newsletter.web.app import create_app
from newsletter.web.ratelimit import reset
from subscribers import mailing_lists, service
from subscribers.models import ConsentSource, Subscription
from tests.support.audience import EXAMPLE, send_status
from tests.support.mailbox import outbox_messages
from worker import sends, welcome
from worker.models import SendStatus

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
def issue_id(db_url: str) -> int:
    reset()
    with session_scope() as session:
        create_user(session, "admin@example.com", PASSWORD, Role.ADMIN)
        create_user(session, "staff@example.com", PASSWORD, Role.STAFF)
        mailing_lists.create_list(session, "weekly", "Weekly", double_opt_in=False)
        return save_issue(session, EXAMPLE.read_text(), filename=str(EXAMPLE)).id


def step_sends() -> list[int]:
    with session_scope() as session:
        return [step.send_id for step in welcome.steps_of(session, mailing_lists.get_list(session, "weekly").id)]


def test_add_see_figures_and_remove(issue_id: int) -> None:
    admin = signed_in("admin@example.com")
    assert "No welcome series." in admin.get("/admin/lists/weekly").text
    token = csrf(admin, "/admin/lists/weekly")
    added = admin.post("/admin/lists/weekly/welcome", data={"csrf_token": token, "issue_id": str(issue_id),
                                                            "after": "0"}, follow_redirects=False)
    assert added.status_code == 303
    [send_id] = step_sends()
    with session_scope() as session:
        service.subscribe(session, mailing_lists.get_list(session, "weekly"), "new@example.org",
                          source=ConsentSource.FORM)
    assert sends.run_welcome_series() == 1 and len(outbox_messages()) == 1
    page = admin.get("/admin/lists/weekly").text
    row = re.search(r"<tr><td>1</td><td>0</td>.*?</tr>", page, re.S)
    assert row is not None and f'/admin/sends/{send_id}">running' in row.group(0)
    assert re.findall(r"<td>(\d+)</td>", row.group(0))[:4] == ["1", "0", "1", "0"]  # #, after, sent, waiting
    # The welcome email is not an issue of the archive's index, but the message's "view online" link works.
    with session_scope() as session:
        record = session.get(IssueRecord, issue_id)
        assert record is not None
        slug = record.slug
    assert slug not in admin.get("/archive").text and slug not in admin.get("/archive.rss").text
    assert admin.get(f"/archive/{slug}").status_code == 200
    [step_id] = re.findall(r'name="step" value="(\d+)"', page)
    removed = admin.post("/admin/lists/weekly/welcome/remove", data={"csrf_token": token, "step": step_id},
                         follow_redirects=False)
    assert removed.status_code == 303 and step_sends() == [] and send_status(send_id) is SendStatus.CANCELLED


@pytest.mark.parametrize("form", [
    {"issue_id": "1", "after": "2 fortnights"}, {"issue_id": "1", "after": "9" * 10_000},
    {"issue_id": "1", "after": "-1d"}, {"issue_id": "abc", "after": "0"}, {"issue_id": "-1", "after": "0"},
    {"issue_id": "9" * 40, "after": "0"}, {"issue_id": "", "after": ""}, {"after": "0"},
])
def test_forged_add_forms_get_a_message(issue_id: int, form: dict[str, str]) -> None:
    admin = signed_in("admin@example.com")
    token = csrf(admin, "/admin/lists/weekly")
    refused = admin.post("/admin/lists/weekly/welcome", data={"csrf_token": token, **form})
    assert refused.status_code == 400 and 'class="flash' in refused.text
    assert step_sends() == []


def test_forms_need_csrf_the_admin_role_and_a_real_step(issue_id: int) -> None:
    admin = signed_in("admin@example.com")
    form = {"issue_id": str(issue_id), "after": "1d"}
    assert admin.post("/admin/lists/weekly/welcome", data=form).status_code == 403
    assert admin.post("/admin/lists/nope/welcome", data={"csrf_token": csrf(admin, "/admin/lists/weekly"),
                                                         **form}).status_code == 404
    staff = signed_in("staff@example.com")
    staff_token = csrf(staff, "/admin/lists/weekly")
    assert staff.post("/admin/lists/weekly/welcome", data={"csrf_token": staff_token, **form}).status_code == 403
    assert step_sends() == []
    token = csrf(admin, "/admin/lists/weekly")
    assert admin.post("/admin/lists/weekly/welcome", data={"csrf_token": token, **form},
                      follow_redirects=False).status_code == 303
    [send_id] = step_sends()
    for forged in ("0", "abc", "9" * 40, str(10**6)):
        refused = admin.post("/admin/lists/weekly/welcome/remove", data={"csrf_token": token, "step": forged})
        assert refused.status_code == 404
    assert admin.post("/admin/lists/weekly/welcome/remove", data={"step": "1"}).status_code == 403
    assert staff.post("/admin/lists/weekly/welcome/remove", data={"csrf_token": staff_token, "step": "1"}
                      ).status_code == 403
    assert step_sends() == [send_id]
    assert "Add to the series" not in staff.get("/admin/lists/weekly").text


@pytest.mark.parametrize(("field", "welcomed"), [({"welcome": "1"}, True), ({}, False), ({"welcome": "yes!"}, False)])
def test_the_import_form_opts_in_to_the_series(issue_id: int, field: dict[str, str], welcomed: bool) -> None:
    admin = signed_in("admin@example.com")
    token = csrf(admin, "/admin/import")
    started = admin.post("/admin/import", data={"csrf_token": token, "list": "weekly", "confirmed": "1",
                                                "consent_source": "fair 2026", **field},
                         files={"file": ("people.csv", b"email,name\nann@example.org,Ann\n", "text/csv")},
                         follow_redirects=False)
    assert started.status_code == 303
    deadline = time.monotonic() + 30
    while 'id="import-result"' not in admin.get(started.headers["location"]).text:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with session_scope() as session:
        assert session.scalar(select(Subscription.welcome)) is welcomed
