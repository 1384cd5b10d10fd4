"""Sign-in details that protect accounts: throttling shared through Redis, Secure cookies behind https, no open
redirect after sign-in, and a password change that signs old sessions out."""

from __future__ import annotations

import re

import pytest
import redis
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import select

from mailer.db import session_scope
from newsletter.auth import create_user
from newsletter.models import Role, User
from newsletter.web.app import create_app
from newsletter.web.ratelimit import reset

PASSWORD = "correct horse battery staple"


@pytest.fixture
def user(sqlite_url: str) -> str:
    reset()
    with session_scope() as session:
        create_user(session, "admin@example.com", PASSWORD, Role.ADMIN)
    return "admin@example.com"


def attempt(client: TestClient, password: str, next_path: str = "/admin", email: str = "admin@example.com") -> int:
    page = client.get("/admin/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    response = client.post("/admin/login", data={"email": email, "password": password, "csrf_token": token,
                                                 "next": next_path}, follow_redirects=False)
    return response.status_code


def test_throttle_is_shared_by_processes_through_redis(user: str, settings, redis_url: str) -> None:
    settings.redis_url = redis_url
    settings.login_attempts_per_window = 2
    reset()
    first, second = TestClient(create_app()), TestClient(create_app())  # two web processes, one Redis
    assert attempt(first, "wrong password 1") == 401
    assert attempt(second, "wrong password 2") == 401
    assert attempt(first, PASSWORD) == 429  # even the right password waits now: no oracle for the guesser
    keys = redis.Redis.from_url(redis_url).keys("nl:rl:login:*")
    assert any(b"admin@example.com" in k for k in keys)
    assert attempt(second, PASSWORD, email="other@example.com") == 401  # another account is not locked


def test_secure_cookie_behind_https(user: str, settings) -> None:
    settings.base_url = "https://news.example.com"
    client = TestClient(create_app(), base_url="https://testserver")
    page = client.get("/admin/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    response = client.post("/admin/login", data={"email": user, "password": PASSWORD, "csrf_token": token},
                           follow_redirects=False)
    cookie = response.headers["set-cookie"].lower()
    assert response.status_code == 303 and "secure" in cookie and "httponly" in cookie and "samesite=lax" in cookie


@pytest.mark.parametrize("target", ["//evil.example/admin", "https://evil.example/", "/admin/lists"])
def test_no_open_redirect_after_sign_in(user: str, target: str) -> None:
    client = TestClient(create_app())
    page = client.get("/admin/login", params={"next": target})
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    response = client.post("/admin/login", data={"email": user, "password": PASSWORD, "csrf_token": token,
                                                 "next": target}, follow_redirects=False)
    assert response.headers["location"] == ("/admin/lists" if target == "/admin/lists" else "/admin")


def test_password_change_signs_old_sessions_out(user: str) -> None:
    client = TestClient(create_app())
    assert attempt(client, PASSWORD) == 303
    assert client.get("/admin", follow_redirects=False).status_code == 200
    with session_scope() as session:
        account = session.scalar(select(User))
        assert account is not None
        account.password_hash = PasswordHasher().hash("a brand new passphrase")
    assert client.get("/admin", follow_redirects=False).status_code == 303
