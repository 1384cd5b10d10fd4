"""The users pages: an admin deactivates, re-roles, resets and revokes, with CSRF on every form; staff get 403
everywhere under /admin/users; the last active admin cannot be deactivated or demoted."""

from __future__ import annotations

import re
import threading

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from mailer.db import session_scope
from newsletter import accounts
from newsletter.auth import AuthError, create_api_token, create_user
from newsletter.models import ApiToken, Role, User
from newsletter.web.admin import users as users_pages
from newsletter.web.app import create_app
from newsletter.web.ratelimit import reset
from tests.newsletter.test_access import every_route, fill
from tests.support.signin import PASSWORD, csrf, opens_admin, sign_in, try_sign_in


@pytest.fixture
def people(db_url: str) -> dict[str, int | str]:
    reset()
    with session_scope() as session:
        admin = create_user(session, "admin@example.com", PASSWORD, Role.ADMIN)
        staff = create_user(session, "staff@example.com", PASSWORD, Role.STAFF)
        other = create_user(session, "other@example.com", PASSWORD, Role.STAFF)
        return {"admin": admin.id, "staff": staff.id, "other": other.id,
                "staff_token": create_api_token(session, staff, "ci"),
                "other_token": create_api_token(session, other, "ci")}


def api(token: object) -> int:
    return TestClient(create_app()).get("/api/v1/lists", headers={"Authorization": f"Bearer {token}"}).status_code


def signed_in(email: str) -> TestClient:
    client = TestClient(create_app())
    sign_in(client, email)
    return client


def test_staff_get_403_on_every_users_route(people: dict[str, int | str]) -> None:
    staff = signed_in("staff@example.com")
    token = csrf(staff, "/admin")
    routes = [(m, p) for m, p in every_route(users_pages.router) if p.startswith("/admin/users")]
    assert len(routes) >= 8
    for method, path in routes:
        url = fill(path).replace("/users/1", f"/users/{people['other']}")
        response = staff.request(method, url, data={"csrf_token": token, "role": "admin"} if method == "POST"
                                 else None, follow_redirects=False)
        assert response.status_code == 403, (method, path, response.status_code)
    assert "Users</a>" not in staff.get("/admin").text
    with session_scope() as session:
        other = session.get(User, people["other"])
        assert other is not None and other.active and other.role is Role.STAFF
    assert api(people["other_token"]) == 200


def test_admin_deactivates_a_user_everything_ends_at_once(people: dict[str, int | str]) -> None:
    staff_cookie = sign_in(TestClient(create_app()), "staff@example.com")
    admin = signed_in("admin@example.com")
    page = admin.get("/admin/users")
    assert page.status_code == 200 and "staff@example.com" in page.text
    url = f"/admin/users/{people['staff']}"
    assert admin.get(url).status_code == 200
    # no CSRF field (a cross-site form): refused, nothing happens
    assert admin.post(f"{url}/deactivate", follow_redirects=False).status_code == 403
    assert opens_admin(staff_cookie) and api(people["staff_token"]) == 200
    done = admin.post(f"{url}/deactivate", data={"csrf_token": csrf(admin, url)})
    assert done.status_code == 200 and "Deactivated" in done.text
    assert not opens_admin(staff_cookie) and api(people["staff_token"]) == 401
    assert try_sign_in(TestClient(create_app()), "staff@example.com") == 401
    admin.post(f"{url}/activate", data={"csrf_token": csrf(admin, url)})
    assert try_sign_in(TestClient(create_app()), "staff@example.com") == 303
    assert api(people["staff_token"]) == 401  # revoked at deactivation, stays revoked


def test_last_active_admin_stays(people: dict[str, int | str]) -> None:
    admin = signed_in("admin@example.com")
    url = f"/admin/users/{people['admin']}"
    token = csrf(admin, url)
    refused = admin.post(f"{url}/deactivate", data={"csrf_token": token})
    assert "last active admin" in refused.text
    refused = admin.post(f"{url}/role", data={"csrf_token": token, "role": "staff"})
    assert "last active admin" in refused.text
    assert admin.post(f"{url}/role", data={"csrf_token": token, "role": "owner"}).status_code == 200
    with session_scope() as session:
        me = session.get(User, people["admin"])
        assert me is not None and me.active and me.role is Role.ADMIN
    promoted = admin.post(f"/admin/users/{people['staff']}/role", data={"csrf_token": token, "role": "admin"})
    assert "is now admin" in promoted.text
    admin.post(f"{url}/role", data={"csrf_token": token, "role": "staff"})  # now allowed: another admin exists
    assert admin.get("/admin/users", follow_redirects=False).status_code == 403  # and applies at once


def test_revoke_another_users_token_only_through_its_owner(people: dict[str, int | str]) -> None:
    admin = signed_in("admin@example.com")
    with session_scope() as session:
        other_token_id = session.scalar(select(ApiToken.id).where(ApiToken.user_id == people["other"]))
        staff_token_id = session.scalar(select(ApiToken.id).where(ApiToken.user_id == people["staff"]))
    token = csrf(admin, "/admin/users")
    # the other user's token through the staff user's page: refused
    wrong = admin.post(f"/admin/users/{people['staff']}/tokens/{other_token_id}/revoke", data={"csrf_token": token})
    assert "No such token" in wrong.text and api(people["other_token"]) == 200
    for bad in (f"/admin/users/{people['staff']}/tokens/{2**70}/revoke", f"/admin/users/{2**70}/signout",
                "/admin/users/0/deactivate"):
        assert admin.post(bad, data={"csrf_token": token}).status_code == 200  # a message, not a 500
    admin.post(f"/admin/users/{people['staff']}/tokens/{staff_token_id}/revoke", data={"csrf_token": token})
    assert api(people["staff_token"]) == 401 and api(people["other_token"]) == 200


def test_reset_password_shows_a_one_time_password_and_ends_sessions(people: dict[str, int | str]) -> None:
    staff_cookie = sign_in(TestClient(create_app()), "staff@example.com")
    admin = signed_in("admin@example.com")
    url = f"/admin/users/{people['staff']}"
    page = admin.post(f"{url}/reset-password", data={"csrf_token": csrf(admin, url)})
    one_time = re.search(r'id="one-time-password">([^<]+)<', page.text).group(1)  # type: ignore[union-attr]
    assert not opens_admin(staff_cookie)
    assert one_time not in admin.get(url).text  # shown once
    browser = TestClient(create_app())
    assert try_sign_in(browser, "staff@example.com", PASSWORD) == 401
    assert try_sign_in(browser, "staff@example.com", one_time) == 303
    assert browser.get("/admin/lists", follow_redirects=False).headers["location"] == "/admin/account"
    assert "Choose your own password" in browser.get("/admin/account").text


def test_admin_ends_another_users_sessions(people: dict[str, int | str]) -> None:
    first = sign_in(TestClient(create_app(), client=("203.0.113.9", 1)), "staff@example.com")
    second = sign_in(TestClient(create_app()), "staff@example.com")
    admin = signed_in("admin@example.com")
    url = f"/admin/users/{people['staff']}"
    page = admin.get(url)
    assert "203.0.113.9" in page.text
    ids = re.findall(rf"{url}/sessions/(\d+)/end", page.text)
    assert len(ids) == 2
    admin.post(f"{url}/sessions/{min(map(int, ids))}/end", data={"csrf_token": csrf(admin, url)})
    assert not opens_admin(first) and opens_admin(second)
    admin.post(f"{url}/signout", data={"csrf_token": csrf(admin, url)})
    assert not opens_admin(second) and admin.get("/admin").status_code == 200


def test_two_admins_demoting_each_other_at_once_leave_one(db_url: str) -> None:
    """The first demotion holds its transaction open while the second runs: the second must wait and refuse, not
    read the admins as they were and leave the installation with none."""
    with session_scope() as session:
        first = create_user(session, "first@example.com", PASSWORD, Role.ADMIN).id
        second = create_user(session, "second@example.com", PASSWORD, Role.ADMIN).id
    written, release = threading.Event(), threading.Event()
    outcome: dict[str, str] = {}

    def demote_first() -> None:
        with session_scope() as session:
            accounts.set_role(session, accounts.get_user(session, first), Role.STAFF)
            written.set()
            release.wait(10)
        outcome["first"] = "done"

    def demote_second() -> None:
        try:
            with session_scope() as session:
                accounts.set_role(session, accounts.get_user(session, second), Role.STAFF)
            outcome["second"] = "done"
        except AuthError as exc:
            outcome["second"] = str(exc)

    one = threading.Thread(target=demote_first)
    one.start()
    assert written.wait(10)
    two = threading.Thread(target=demote_second)
    two.start()
    two.join(0.5)
    release.set()
    one.join(10)
    two.join(40)
    assert outcome["first"] == "done" and "last active admin" in outcome["second"]
    with session_scope() as session:
        assert session.scalars(select(User.email).where(User.role == Role.ADMIN, User.active.is_(True))).all() == [
            "second@example.com"]
