"""Access control over every route of the app: anonymous requests to /admin and /api are refused, staff cannot
do admin-only things, sign-in is throttled, sessions and tokens behave."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Mount

from mailer.db import session_scope
from newsletter.auth import create_api_token, create_user
from newsletter.models import Role
from newsletter.web.app import create_app
from newsletter.web.ratelimit import reset
from tests.mailer.test_issue import EXAMPLE
from tests.support.mailbox import outbox_messages

PASSWORD = "correct horse battery staple"
PUBLIC_PREFIXES = ("/lists/", "/confirm/", "/unsubscribe/", "/preferences/", "/archive", "/healthz", "/webhooks/",
                   "/api/docs",
                   "/api/v1/public/",
                   "/admin/login")


def every_route(app: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Every (method, path), through included routers (FastAPI >= 0.165 wraps them) and mounted apps."""
    found: list[tuple[str, str]] = []
    for route in getattr(app, "routes", ()):  # a static-files mount has none
        if hasattr(route, "effective_route_contexts"):
            found += [(method, prefix + ctx.path) for ctx in route.effective_route_contexts()
                      for method in (ctx.methods or ())]
        elif isinstance(route, Mount):
            found += every_route(route.app, prefix + route.path)
        elif isinstance(route, APIRoute):
            found += [(method, prefix + route.path) for method in route.methods]
    return sorted(set(found))


def fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


@pytest.fixture
def users(db_url: str) -> dict[str, str]:
    reset()
    with session_scope() as session:
        admin = create_user(session, "admin@example.com", PASSWORD, Role.ADMIN)
        staff = create_user(session, "staff@example.com", PASSWORD, Role.STAFF)
        return {"admin": create_api_token(session, admin, "ci"), "staff": create_api_token(session, staff, "ci")}


def sign_in(client: TestClient, email: str) -> None:
    page = client.get("/admin/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    response = client.post("/admin/login", data={"email": email, "password": PASSWORD, "csrf_token": token},
                           follow_redirects=False)
    assert response.status_code == 303, response.text


def test_every_admin_and_api_route_refuses_anonymous(users: dict[str, str]) -> None:
    app = create_app()
    client = TestClient(app)
    routes = every_route(app)
    protected = [(m, p) for m, p in routes if (p.startswith("/admin") or p.startswith("/api"))
                 and not p.startswith(PUBLIC_PREFIXES)]
    assert len(protected) > 30
    for method, path in protected:
        response = client.request(method, fill(path), follow_redirects=False)
        if path.startswith("/api"):
            assert response.status_code == 401, (method, path, response.status_code)
            assert response.json()["error"].startswith("A valid API token")
        elif method == "GET":
            assert response.status_code == 303 and "/admin/login" in response.headers["location"], (method, path)
        else:  # a form post without a session: refused before anything happens (CSRF or sign-in)
            assert response.status_code in (303, 403), (method, path, response.status_code)
    unknown = [(m, p) for m, p in routes if not (p.startswith(("/admin", "/api")) or p.startswith(PUBLIC_PREFIXES))]
    assert unknown == [], f"routes outside the access rules: {unknown}"


def test_staff_cannot_do_admin_things(users: dict[str, str]) -> None:
    client = TestClient(create_app())
    sign_in(client, "staff@example.com")
    assert client.get("/admin").status_code == 200
    assert client.get("/admin/issues").status_code == 200
    assert client.get("/admin/suppressions").status_code == 403
    assert client.get("/admin/tokens").status_code == 403
    api = TestClient(create_app(), headers={"Authorization": f"Bearer {users['staff']}"})
    assert api.get("/api/v1/lists").status_code == 200
    forbidden = api.post("/api/v1/lists", json={"slug": "x", "name": "X"})
    assert forbidden.status_code == 403 and "admin" in forbidden.json()["error"]
    assert api.get("/api/v1/suppressions").status_code == 403


def test_sign_in_wrong_password_throttled_and_sign_out(users: dict[str, str], settings) -> None:
    settings.login_attempts_per_window = 3
    client = TestClient(create_app())
    page = client.get("/admin/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    codes = [client.post("/admin/login", data={"email": "admin@example.com", "password": "wrong password!",
                                               "csrf_token": token}).status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    other = TestClient(create_app())
    sign_in(other, "staff@example.com")
    cookie = other.cookies.get("nl_session")
    assert cookie
    page = other.get("/admin")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    other.post("/admin/logout", data={"csrf_token": token})
    assert other.get("/admin", follow_redirects=False).status_code == 303


def test_session_cookie_flags_and_forgery(users: dict[str, str]) -> None:
    client = TestClient(create_app())
    page = client.get("/admin/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    response = client.post("/admin/login", data={"email": "admin@example.com", "password": PASSWORD,
                                                 "csrf_token": token}, follow_redirects=False)
    header = response.headers["set-cookie"].lower()
    assert "httponly" in header and "samesite=lax" in header
    forged = TestClient(create_app(), cookies={"nl_session": "eyJ1aWQiOjF9.forged.sig"})
    assert forged.get("/admin", follow_redirects=False).status_code == 303


def test_api_round_trip_and_json_errors(users: dict[str, str]) -> None:
    api = TestClient(create_app(), headers={"Authorization": f"Bearer {users['admin']}"})
    assert api.post("/api/v1/lists", json={"slug": "weekly", "name": "Weekly"}).status_code == 201
    assert api.post("/api/v1/lists", json={"slug": "weekly", "name": "Weekly"}).json()["error"].startswith("A list")
    created = api.post("/api/v1/subscribers", json={"email": "Reader@Example.com", "list": "weekly",
                                                    "confirmed": True, "consent_source": "api test"})
    assert created.status_code == 201 and created.json()["subscriptions"] == {"weekly": "confirmed"}
    missing_source = api.post("/api/v1/subscribers", json={"email": "b@example.com", "list": "weekly",
                                                           "confirmed": True})
    assert missing_source.status_code == 422 and "consent source" in missing_source.json()["error"]
    bad = api.post("/api/v1/issues", json={"markdown": "no front matter"})
    assert bad.status_code == 422 and "front matter" in bad.json()["error"]
    issue = api.post("/api/v1/issues", json={"markdown": EXAMPLE.read_text()}).json()
    preview = api.post("/api/v1/issues/preview", json={"markdown": EXAMPLE.read_text()}).json()
    assert "Chipmakers" in preview["html"] and preview["warnings"] == []
    send = api.post("/api/v1/sends", json={"issue_id": issue["id"], "list": "weekly"})
    assert send.status_code == 201, send.text
    status = api.get(f"/api/v1/sends/{send.json()['id']}").json()
    assert status["status"] == "done" and status["counters"]["sent"] == 1
    assert len(outbox_messages()) == 1
    again = api.post("/api/v1/sends", json={"issue_id": issue["id"], "list": "weekly"})
    assert again.status_code == 409 and "already sent" in again.json()["error"]
    assert api.get("/api/v1/sends/999").json() == {"error": "No such send."}
    erased = api.delete(f"/api/v1/subscribers/{created.json()['id']}")
    assert erased.status_code == 204
    assert api.get(f"/api/v1/subscribers/{created.json()['id']}").status_code == 404
    assert "reader@example.com" not in api.get("/api/v1/suppressions").json()  # hashed only after erasure


def test_archive_lists_only_sent_issues_and_rss(users: dict[str, str]) -> None:
    api = TestClient(create_app(), headers={"Authorization": f"Bearer {users['admin']}"})
    api.post("/api/v1/lists", json={"slug": "weekly", "name": "Weekly"})
    issue = api.post("/api/v1/issues", json={"markdown": EXAMPLE.read_text()}).json()
    public = TestClient(create_app())
    assert public.get(f"/archive/{issue['slug']}").status_code == 404  # not sent yet
    api.post("/api/v1/sends", json={"issue_id": issue["id"], "list": "weekly"})
    page = public.get(f"/archive/{issue['slug']}")
    assert page.status_code == 200 and "Chipmakers race" in page.text and "__NL" not in page.text
    assert issue["slug"] in public.get("/archive").text
    feed = ET.fromstring(public.get("/archive.rss").content)
    assert feed.find("channel/item/link").text.endswith(f"/archive/{issue['slug']}")  # type: ignore[union-attr]
