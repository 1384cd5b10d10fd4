"""Admin pages through the real app (both databases): keyset pagination, filters, list editing, suppressions with
reasons, subscriber actions, CSRF on forms, export and the live-progress endpoint."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from mailer.db import session_scope
from newsletter.auth import create_user
from newsletter.models import Role
from newsletter.web.app import create_app
from newsletter.web.ratelimit import reset
from subscribers import mailing_lists, service
from subscribers.models import ConsentEvent, ConsentKind, ConsentSource, MailingList, Subscriber, Suppression
from tests.mailer.test_issue import EXAMPLE
from tests.support.mailbox import outbox_messages

PASSWORD = "correct horse battery staple"


def csrf(client: TestClient, path: str = "/admin/login") -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text).group(1)  # type: ignore[union-attr]


@pytest.fixture
def admin(db_url: str) -> TestClient:
    reset()
    with session_scope() as session:
        create_user(session, "admin@example.com", PASSWORD, Role.ADMIN)
        weekly = mailing_lists.create_list(session, "weekly", "Weekly", double_opt_in=False)
        other = mailing_lists.create_list(session, "other", "Other", double_opt_in=False)
        for n in range(120):
            service.subscribe(session, weekly if n % 3 else other, f"reader{n:03d}@example.org", f"Reader {n}",
                              source=ConsentSource.ADMIN)
    client = TestClient(create_app())
    response = client.post("/admin/login", data={"email": "admin@example.com", "password": PASSWORD,
                                                 "csrf_token": csrf(client)}, follow_redirects=False)
    assert response.status_code == 303
    return client


def addresses(html: str) -> list[str]:
    return re.findall(r'/admin/subscribers/\d+">([^<]+)</a>', html)


def test_keyset_pagination_walks_everyone_once(admin: TestClient) -> None:
    seen: list[str] = []
    url = "/admin/subscribers"
    pages = 0
    while url:
        page = admin.get(url.replace("&amp;", "&"))
        assert page.status_code == 200
        seen += addresses(page.text)
        pages += 1
        found = re.search(r'href="(/admin/subscribers\?[^"]*after=\d+)"', page.text)
        url = found.group(1) if found else ""
    assert pages == 3 and len(seen) == 120 and len(set(seen)) == 120
    filtered = addresses(admin.get("/admin/subscribers", params={"list": "other", "status": "confirmed"}).text)
    assert len(filtered) == 40 and all(int(a[6:9]) % 3 == 0 for a in filtered)
    assert addresses(admin.get("/admin/subscribers", params={"q": "reader007"}).text) == ["reader007@example.org"]
    exact = admin.get("/admin/subscribers", params={"q": " Reader007@Example.org "}).text
    assert addresses(exact) == ["reader007@example.org"]
    assert addresses(admin.get("/admin/subscribers", params={"list": "nope"}).text) == []
    assert addresses(admin.get("/admin/subscribers", params={"status": "unsubscribed"}).text) == []


def test_list_edit_and_snippet(admin: TestClient) -> None:
    token = csrf(admin, "/admin/lists/weekly")
    saved = admin.post("/admin/lists/weekly", data={"csrf_token": token, "name": "Weekly Digest",
                                                    "from_name": "The Desk", "from_email": "desk@example.com",
                                                    "double_opt_in": "1", "welcome_enabled": "1",
                                                    "embeddable": "1", "embed_origins": "https://Blog.example.org/",
                                                    "thank_you_url": "https://blog.example.org/thanks",
                                                    "archive_private": "1"})
    assert saved.status_code == 200 and "Saved" in saved.text
    shown = saved.text.replace("&#34;", '"').replace("&quot;", '"')
    assert shown.count('action="http://testserver/lists/weekly/embed"') == 2  # the plain and the script snippets
    assert "/api/v1/public/lists/weekly/subscribe" in shown
    with session_scope() as session:
        weekly = session.scalar(select(MailingList).where(MailingList.slug == "weekly"))
        assert weekly is not None and weekly.from_email == "desk@example.com" and weekly.double_opt_in
        assert weekly.welcome_enabled and weekly.name == "Weekly Digest"
        assert weekly.embeddable and weekly.allowed_origins == ["https://blog.example.org"]
        assert weekly.thank_you_url == "https://blog.example.org/thanks" and weekly.archive_private
    bad_origin = admin.post("/admin/lists/weekly", data={"csrf_token": token, "name": "Weekly Digest",
                                                         "embed_origins": "https://blog.example.org/some/page"})
    assert bad_origin.status_code == 400 and "no path" in bad_origin.text
    with session_scope() as session:
        weekly = session.scalar(select(MailingList).where(MailingList.slug == "weekly"))
        assert weekly is not None and weekly.embeddable and weekly.allowed_origins == ["https://blog.example.org"]
    refused = admin.post("/admin/lists/weekly", data={"csrf_token": token, "name": "X", "from_email": "not mail"})
    assert refused.status_code == 400 and "from_email" in refused.text
    with session_scope() as session:
        assert session.scalar(select(MailingList.from_email).where(MailingList.slug == "weekly")) == "desk@example.com"


def test_forms_need_csrf(admin: TestClient) -> None:
    refused = admin.post("/admin/lists", data={"slug": "x", "name": "X"})
    assert refused.status_code == 403
    with session_scope() as session:
        assert session.scalar(select(MailingList).where(MailingList.slug == "x")) is None


def test_suppressions_add_and_remove_with_reason(admin: TestClient) -> None:
    token = csrf(admin, "/admin/suppressions")
    admin.post("/admin/suppressions", data={"csrf_token": token, "action": "add", "email": "Reader001@example.org",
                                            "note": "asked by phone"})
    page = admin.get("/admin/suppressions").text
    assert "reader001@example.org" in page and "asked by phone (by admin@example.com)" in page
    admin.post("/admin/suppressions", data={"csrf_token": token, "action": "remove", "email": "reader001@example.org",
                                            "note": "added by mistake"})
    with session_scope() as session:
        assert not service.is_suppressed(session, "reader001@example.org")
        assert session.scalar(select(Suppression)) is None


def test_subscriber_actions_and_erase_needs_confirmation(admin: TestClient) -> None:
    with session_scope() as session:
        reader = session.scalar(select(Subscriber).where(Subscriber.email == "reader001@example.org"))
        assert reader is not None
        reader_id = reader.id
        weekly_id = session.scalar(select(MailingList.id).where(MailingList.slug == "weekly"))
    path = f"/admin/subscribers/{reader_id}"
    token = csrf(admin, path)
    admin.post(f"{path}/action", data={"csrf_token": token, "action": "unsubscribe", "list_id": str(weekly_id)})
    admin.post(f"{path}/action", data={"csrf_token": token, "action": "resubscribe", "list_id": str(weekly_id)})
    admin.post(f"{path}/action", data={"csrf_token": token, "action": "suppress"})
    page = admin.get(path).text
    assert "suppressed" in page and "unsubscribed" in page and "resubscribed" in page  # consent timeline
    admin.post(f"{path}/action", data={"csrf_token": token, "action": "erase"})  # no confirmation: nothing happens
    assert admin.get(path).status_code == 200 and "reader001@example.org" in admin.get(path).text
    admin.post(f"{path}/action", data={"csrf_token": token, "action": "erase", "confirm": "yes"})
    with session_scope() as session:
        erased = session.get(Subscriber, reader_id)
        assert erased is not None and erased.erased_at is not None and erased.email != "reader001@example.org"
        kinds = {e.kind for e in session.scalars(select(ConsentEvent).where(ConsentEvent.subscriber_id == reader_id))}
        assert ConsentKind.ERASED in kinds


def test_export_and_progress_endpoint(admin: TestClient) -> None:
    exported = admin.get("/admin/export", params={"list": "other"})
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    assert exported.text.count("@example.org") == 40
    assert admin.get("/admin/export", params={"list": "nope"}).status_code == 404
    assert admin.get("/admin/sends/99/progress.json").json() == {"error": "No such send."}


def test_api_token_shown_once_then_revoked(admin: TestClient) -> None:
    token = csrf(admin, "/admin/tokens")
    created = admin.post("/admin/tokens", data={"csrf_token": token, "name": "zapier"})
    value = re.search(r'<code id="new-token">(nl_[^<]+)</code>', created.text)
    assert value is not None
    assert value.group(1) not in admin.get("/admin/tokens").text  # shown once
    api = TestClient(create_app(), headers={"Authorization": f"Bearer {value.group(1)}"})
    assert api.get("/api/v1/lists").status_code == 200
    token_id = re.search(r'action="/admin/tokens/(\d+)/revoke"', admin.get("/admin/tokens").text)
    assert token_id is not None
    revoked = admin.post(f"/admin/tokens/{token_id.group(1)}/revoke", data={"csrf_token": token})
    assert "Revoked" in revoked.text and "revoked" in revoked.text
    assert api.get("/api/v1/lists").status_code == 401


def test_staff_send_tests_only_to_themselves(admin: TestClient) -> None:
    with session_scope() as session:
        create_user(session, "staff@example.com", PASSWORD, Role.STAFF)
    staff = TestClient(create_app())
    signed = staff.post("/admin/login", data={"email": "staff@example.com", "password": PASSWORD,
                                              "csrf_token": csrf(staff)}, follow_redirects=False)
    assert signed.status_code == 303, signed.text
    token = csrf(staff, "/admin/issues")
    saved = staff.post("/admin/issues", data={"csrf_token": token, "source": EXAMPLE.read_text()},
                       follow_redirects=False)
    issue_path = saved.headers["location"].split("?")[0]
    other = staff.post(f"{issue_path}/test", data={"csrf_token": token, "to": "victim@example.org"})
    assert "own address only" in other.text and outbox_messages() == []
    mine = staff.post(f"{issue_path}/test", data={"csrf_token": token, "to": "Staff@example.com"})
    assert "Test sent" in mine.text and len(outbox_messages()) == 1
    with session_scope() as session:  # as a German list would get it: its language, not the service's
        mailing_lists.create_list(session, "woche", "Die Woche", look=mailing_lists.ListLook(language="de"))
    german = staff.post(f"{issue_path}/test", data={"csrf_token": token, "to": "staff@example.com", "list": "woche"})
    assert "Test sent" in german.text and len(outbox_messages()) == 2
    body = outbox_messages()[-1].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Abbestellen" in body and "Unsubscribe" not in body
    missing = staff.post(f"{issue_path}/test", data={"csrf_token": token, "to": "staff@example.com", "list": "nope"})
    assert "No list called" in missing.text and len(outbox_messages()) == 2
