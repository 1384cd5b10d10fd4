"""A signed-in admin walks every admin route with made-up ids and empty forms: answers are pages, redirects or
clear refusals, never a server error."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from mailer.db import session_scope
from newsletter.auth import create_user
from newsletter.models import Role
from newsletter.web.app import create_app
from newsletter.web.ratelimit import reset
from tests.newsletter.test_access import every_route

PASSWORD = "correct horse battery staple"


def test_every_admin_route_survives_odd_input(pg_url: str) -> None:
    reset()
    with session_scope() as session:
        # Someone else is user 1 and holds session 1, so the walk's "1" ids end their session, not the walker's.
        create_user(session, "other@example.com", PASSWORD, Role.STAFF)
        create_user(session, "admin@example.com", PASSWORD, Role.ADMIN)
    app = create_app()
    other = TestClient(app)
    other.post("/admin/login", data={"email": "other@example.com", "password": PASSWORD, "csrf_token": re.search(
        r'name="csrf_token" value="([^"]+)"', other.get("/admin/login").text).group(1)})  # type: ignore[union-attr]
    client = TestClient(app, raise_server_exceptions=False)
    token = re.search(r'name="csrf_token" value="([^"]+)"',  # type: ignore[union-attr]
                      client.get("/admin/login").text).group(1)
    client.post("/admin/login", data={"email": "admin@example.com", "password": PASSWORD, "csrf_token": token})
    routes = [(m, p) for m, p in every_route(app) if p.startswith("/admin") and p != "/admin/logout"]
    assert len(routes) > 25
    errors = []
    for value in ("1", "999999", "nope"):
        for method, path in routes:
            url = re.sub(r"\{[^}]+\}", value, path)
            if method == "GET":
                response = client.get(url, follow_redirects=False)
            else:
                response = client.post(url, data={"csrf_token": token, "action": "erase", "list": "nope",
                                                  "email": "x", "source": "", "to": "bad"}, follow_redirects=False)
            if response.status_code >= 500:
                errors.append((method, url, response.status_code))
    assert errors == []
    assert client.get("/admin", follow_redirects=False).status_code == 200  # still signed in: nothing broke
