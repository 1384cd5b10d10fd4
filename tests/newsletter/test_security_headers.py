"""Security headers on every kind of response, scripts allowed by nonce only, and admin flash messages that a
link cannot forge."""

from __future__ import annotations

import re
from urllib.parse import quote

import httpx
import pytest
from fastapi.testclient import TestClient

from mailer.db import session_scope
from mailer.settings import reset_settings
from newsletter.auth import create_user
from newsletter.models import Role
from newsletter.web.app import create_app
from newsletter.web.flash import flash_url
from newsletter.web.ratelimit import reset
from subscribers import mailing_lists
from tests.newsletter.test_access import PASSWORD, sign_in


@pytest.fixture
def client(sqlite_url: str) -> TestClient:
    reset()
    with session_scope() as session:
        create_user(session, "admin@example.com", PASSWORD, Role.ADMIN)
        mailing_lists.create_list(session, "weekly", "Weekly")
    return TestClient(create_app())


def _check(response: httpx.Response, *, hsts: bool = False) -> str:
    headers = response.headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "same-origin"
    csp = headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp and "base-uri 'none'" in csp
    script_src = re.search(r"script-src ([^;]+)", csp)
    assert script_src is not None and "'unsafe-inline'" not in script_src.group(1)
    assert ("Strict-Transport-Security" in headers) is hsts
    return csp


def test_every_kind_of_response_carries_the_headers(client: TestClient) -> None:
    sign_in(client, "admin@example.com")
    anonymous = TestClient(client.app)
    for response in (client.get("/admin"), client.get("/admin/issues"), anonymous.get("/lists/weekly/subscribe"),
                     anonymous.get("/unsubscribe/forged"), anonymous.get("/archive"), anonymous.get("/healthz"),
                     anonymous.get("/api/v1/lists"), anonymous.get("/no/such/page"),
                     anonymous.post("/api/v1/issues", content=b"x" * (2 << 20),
                                    headers={"Content-Type": "application/json"})):
        assert response.status_code in (200, 400, 401, 404, 413), response.status_code
        _check(response)


def test_hsts_only_when_the_public_url_is_https(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_BASE_URL", "https://news.example.com")
    reset_settings()
    response = client.get("/lists/weekly/subscribe")
    _check(response, hsts=True)
    assert response.headers["Strict-Transport-Security"].startswith("max-age=31536000")


def test_inline_scripts_carry_this_responses_nonce(client: TestClient) -> None:
    sign_in(client, "admin@example.com")
    nonces = []
    for _ in range(2):
        response = client.get("/admin")
        nonce = re.search(r"'nonce-([^']+)'", response.headers["Content-Security-Policy"])
        assert nonce is not None
        scripts = re.findall(r"<script([^>]*)>", response.text)
        assert scripts and all(f'nonce="{nonce.group(1)}"' in attributes for attributes in scripts)
        assert not re.search(r"\son[a-z]+=", response.text)  # no inline event handlers, which no nonce covers
        nonces.append(nonce.group(1))
    assert nonces[0] != nonces[1]


def test_a_flash_message_in_a_link_is_not_shown_unless_the_app_signed_it(client: TestClient) -> None:
    sign_in(client, "admin@example.com")
    pitch = "Your session expired. Sign in again at https://evil.example/admin"
    forged = client.get(f"/admin/lists/weekly?flash={quote(pitch)}")
    assert forged.status_code == 200 and "evil.example" not in forged.text
    genuine = client.get(flash_url("/admin/lists/weekly", "Saved"))
    assert re.search(r'class="flash[^"]*"[^>]*>Saved<', genuine.text)
    tampered = flash_url("/admin/lists/weekly", "Saved").replace("flash=", "flash=x")
    assert 'class="flash' not in client.get(tampered).text


def test_an_admin_action_redirects_with_a_signed_flash(client: TestClient) -> None:
    sign_in(client, "admin@example.com")
    page = client.get("/admin/lists")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    response = client.post("/admin/lists", data={"csrf_token": token, "slug": "monthly", "name": "Monthly"})
    assert response.status_code == 200 and re.search(r'class="flash[^"]*"[^>]*>List created<', response.text)
