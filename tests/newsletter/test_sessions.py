"""Server-side sessions: signing out, "sign out everywhere", a password change and expiry end a session for every
copy of its cookie, not only for the browser that asked."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import select, update

from mailer.db import session_scope, utcnow
from mailer.settings import get_settings
from newsletter.auth import create_user
from newsletter.models import Role, User, UserSession
from newsletter.web.app import create_app
from newsletter.web.ratelimit import reset
from tests.support.signin import PASSWORD, csrf, opens_admin, sign_in

NEW_PASSWORD = "another long passphrase here"


@pytest.fixture
def accounts(db_url: str) -> None:
    reset()
    with session_scope() as session:
        create_user(session, "admin@example.com", PASSWORD, Role.ADMIN)
        create_user(session, "staff@example.com", PASSWORD, Role.STAFF)


def browser(address: str, agent: str) -> TestClient:
    return TestClient(create_app(), client=(address, 50000), headers={"User-Agent": agent})


def test_cookie_saved_before_sign_out_is_refused(accounts: None) -> None:
    client = browser("198.51.100.7", "Firefox/140")
    saved = sign_in(client, "staff@example.com")
    assert opens_admin(saved)
    assert client.post("/admin/logout", data={"csrf_token": csrf(client, "/admin")},
                       follow_redirects=False).status_code == 303
    assert not opens_admin(saved)  # the copy an attacker kept is dead too, not only the browser's
    with session_scope() as session:
        row = session.scalar(select(UserSession))
        assert row is not None and row.revoked_reason == "signed out"
        assert row.client_address == "198.51.100.7" and row.user_agent == "Firefox/140"
        assert len(row.id_hash) == 64 and row.id_hash not in saved  # only a hash of the id is stored


def test_sign_out_everywhere_else_and_end_one(accounts: None) -> None:
    laptop, phone, tablet = (browser("198.51.100.7", "Laptop"), browser("203.0.113.9", "Phone"),
                             browser("192.0.2.44", "Tablet"))
    kept, on_phone, on_tablet = (sign_in(laptop, "staff@example.com"), sign_in(phone, "staff@example.com"),
                                 sign_in(tablet, "staff@example.com"))
    other_user = sign_in(browser("192.0.2.1", "Admin"), "admin@example.com")
    page = laptop.get("/admin/account")
    assert page.status_code == 200 and "203.0.113.9" in page.text and "Phone" in page.text
    assert "this browser" in page.text and "192.0.2.1" not in page.text  # only one's own sessions
    phone_id = int(re.search(r'/admin/account/sessions/(\d+)/end', page.text.split("Phone")[1]).group(1))  # type: ignore[union-attr]
    with session_scope() as session:
        admins_session = session.scalar(select(UserSession.id).join(User).where(User.email == "admin@example.com"))
    token = csrf(laptop, "/admin/account")
    # someone else's session id: refused, nothing ends
    laptop.post(f"/admin/account/sessions/{admins_session}/end", data={"csrf_token": token})
    assert opens_admin(other_user)
    assert laptop.post(f"/admin/account/sessions/{2**70}/end", data={"csrf_token": token}).status_code == 200
    laptop.post(f"/admin/account/sessions/{phone_id}/end", data={"csrf_token": token})
    assert not opens_admin(on_phone) and opens_admin(on_tablet) and opens_admin(kept)
    done = laptop.post("/admin/account/signout-others", data={"csrf_token": token})
    assert done.status_code == 200 and "1 other session" in done.text
    assert not opens_admin(on_tablet) and opens_admin(kept) and opens_admin(other_user)


def test_forms_need_csrf(accounts: None) -> None:
    laptop, phone = browser("198.51.100.7", "Laptop"), browser("203.0.113.9", "Phone")
    sign_in(laptop, "staff@example.com")
    on_phone = sign_in(phone, "staff@example.com")
    assert laptop.post("/admin/account/signout-others").status_code == 403
    assert laptop.post("/admin/account/signout-others", data={"csrf_token": "x" * 43}).status_code == 403
    assert opens_admin(on_phone)


def test_password_change_ends_other_sessions_keeps_this_one(accounts: None) -> None:
    laptop, phone = browser("198.51.100.7", "Laptop"), browser("203.0.113.9", "Phone")
    before = sign_in(laptop, "staff@example.com")
    on_phone = sign_in(phone, "staff@example.com")
    token = csrf(laptop, "/admin/account")
    wrong = laptop.post("/admin/account/password", data={"csrf_token": token, "current": "not my password!",
                                                         "password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert wrong.status_code == 400 and "current password is wrong" in wrong.text and opens_admin(on_phone)
    short = laptop.post("/admin/account/password", data={"csrf_token": token, "current": PASSWORD,
                                                         "password": "short", "confirm": "short"})
    assert short.status_code == 400 and "12 characters" in short.text and opens_admin(on_phone)
    changed = laptop.post("/admin/account/password", data={"csrf_token": token, "current": PASSWORD,
                                                           "password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
                          follow_redirects=False)
    assert changed.status_code == 303
    assert not opens_admin(on_phone) and not opens_admin(before)
    assert laptop.get("/admin", follow_redirects=False).status_code == 200  # this browser got a fresh session
    sign_in(browser("192.0.2.8", "New"), "staff@example.com", NEW_PASSWORD)


def test_expired_revoked_and_pre_migration_cookies_refused(accounts: None) -> None:
    client = browser("198.51.100.7", "Laptop")
    saved = sign_in(client, "staff@example.com")
    with session_scope() as session:
        session.execute(update(UserSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert not opens_admin(saved)
    # a cookie in the old stateless format, correctly signed with the secret: refused (it names no session)
    with session_scope() as session:
        user = session.scalar(select(User).where(User.email == "staff@example.com"))
        assert user is not None
        fingerprint = hashlib.sha256(user.password_hash.encode()).hexdigest()[:16]
        old = URLSafeTimedSerializer(get_settings().secret, salt="newsletter.admin-session").dumps(
            {"uid": user.id, "fp": fingerprint})
    assert not opens_admin(str(old))
    assert not opens_admin("x" * 5000)  # huge garbage: refused, no error
