"""The public form posts dispatched without the router (newsletter/web/fastpost.py) behave as their routes declare:
the same handler, the same CSRF check, and nothing else is taken from the router."""

from __future__ import annotations

from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from mailer.db import session_scope
from newsletter.web import embed, public
from newsletter.web.app import create_app
from newsletter.web.csrf import verify_csrf
from newsletter.web.fastpost import ROUTES
from subscribers import mailing_lists


def test_the_table_is_the_routes_own() -> None:
    routes = {(route.path, method): route for route in [*public.router.routes, *embed.router.routes]
              if isinstance(route, APIRoute) for method in route.methods}
    for fast in ROUTES:
        route = routes[(fast.path, "POST")]
        assert route.endpoint is fast.handler, fast.path
        checks_csrf = any(dependency.call is verify_csrf for dependency in route.dependant.dependencies)
        assert checks_csrf is fast.csrf, fast.path


def test_csrf_is_still_checked_and_other_paths_are_the_routers(db_url: str) -> None:
    with session_scope() as session:
        mailing_lists.create_list(session, "weekly", "Weekly")
    client = TestClient(create_app())
    refused = client.post("/lists/weekly/subscribe", data={"email": "a@example.com"})
    assert refused.status_code == 403 and "another site" in refused.text
    forged = client.post("/confirm/not-a-token", data={"csrf_token": "x"}, cookies={"nl_csrf": "y" * 43})
    assert forged.status_code == 403
    assert client.post("/lists/weekly/embed/extra", data={"email": "a@example.com"}).status_code in (404, 405)
    assert client.post("/lists//embed", data={"email": "a@example.com"}).status_code in (404, 405)
    accepted = client.post("/lists/weekly/embed", data={"email": "a@example.com"},
                           headers={"Origin": "https://blog.example.org"})
    assert accepted.status_code == 200 and "Check your inbox" in accepted.text
    assert "content-security-policy" in accepted.headers  # the app's own middleware still wraps the answer
