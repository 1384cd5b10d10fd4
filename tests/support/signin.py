"""Signing in to the admin through the real app, as a browser would (CSRF cookie and field, then the form)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from newsletter.web.app import create_app

PASSWORD = "correct horse battery staple"


def csrf(client: TestClient, path: str = "/admin/login") -> str:
    """The CSRF field of a page; the client keeps the matching cookie."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text)
    assert found, f"no CSRF field on {path}"
    return found.group(1)


def try_sign_in(client: TestClient, email: str, password: str = PASSWORD) -> int:
    response = client.post("/admin/login", data={"email": email, "password": password, "csrf_token": csrf(client)},
                           follow_redirects=False)
    return response.status_code


def sign_in(client: TestClient, email: str, password: str = PASSWORD) -> str:
    """Signs in and returns the session cookie, for replaying it later from another client."""
    assert try_sign_in(client, email, password) == 303
    cookie = client.cookies.get("nl_session")
    assert cookie
    return cookie


def opens_admin(cookie: str, path: str = "/admin") -> bool:
    """Whether a saved session cookie, replayed from a fresh browser, still gets a page."""
    return TestClient(create_app(), cookies={"nl_session": cookie}).get(path, follow_redirects=False).status_code == 200
