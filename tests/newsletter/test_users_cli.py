"""`newsletter users ...` as an operator runs it: prompted password stored as argon2, tokens shown once."""

from __future__ import annotations

import hashlib
import re

from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from mailer.db import session_scope
from newsletter.cli import app
from newsletter.models import ApiToken, Role, User
from newsletter.web.app import create_app
from tests.support.signin import csrf, opens_admin, sign_in, try_sign_in

runner = CliRunner()
PASSWORD = "a long enough passphrase"


def test_add_prompts_for_password_and_hashes_it(sqlite_url: str) -> None:
    result = runner.invoke(app, ["users", "add", "Ops@Example.com", "--role", "admin"],
                           input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    with session_scope() as session:
        user = session.scalar(select(User))
        assert user is not None and user.email == "ops@example.com" and user.role is Role.ADMIN
        assert user.password_hash.startswith("$argon2id$") and PASSWORD not in user.password_hash
    listed = runner.invoke(app, ["users", "ls"])
    assert "ops@example.com" in listed.output and "admin" in listed.output
    again = runner.invoke(app, ["users", "add", "ops@example.com"], input=f"{PASSWORD}\n{PASSWORD}\n")
    assert again.exit_code == 1 and "already exists" in again.output


def test_short_password_refused(sqlite_url: str) -> None:
    result = runner.invoke(app, ["users", "add", "a@example.com"], input="short\nshort\n")
    assert result.exit_code == 1 and "12 characters" in result.output
    with session_scope() as session:
        assert session.scalar(select(User)) is None


def test_token_create_shown_once_stored_hashed_and_works(sqlite_url: str) -> None:
    runner.invoke(app, ["users", "add", "bot@example.com", "--role", "staff"], input=f"{PASSWORD}\n{PASSWORD}\n")
    result = runner.invoke(app, ["users", "token", "create", "bot@example.com", "--name", "zapier"])
    assert result.exit_code == 0, result.output
    token = result.output.split()[0]
    assert token.startswith("nl_") and len(token) > 40
    with session_scope() as session:
        stored = session.scalar(select(ApiToken))
        assert stored is not None and stored.name == "zapier"
        assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest()
    api = TestClient(create_app())
    assert api.get("/api/v1/lists", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert api.get("/api/v1/lists", headers={"Authorization": f"Bearer {token}x"}).status_code == 401
    missing = runner.invoke(app, ["users", "token", "create", "nobody@example.com", "--name", "x"])
    assert missing.exit_code == 1 and "no user" in missing.output


def _add(email: str, role: str) -> None:
    result = runner.invoke(app, ["users", "add", email, "--role", role], input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output


def _token(email: str) -> str:
    result = runner.invoke(app, ["users", "token", "create", email, "--name", "ci"])
    assert result.exit_code == 0, result.output
    return result.output.split()[0]


def _api_status(token: str) -> int:
    return TestClient(create_app()).get("/api/v1/lists", headers={"Authorization": f"Bearer {token}"}).status_code


def test_deactivate_refuses_saved_cookie_and_token_at_once(db_url: str) -> None:
    _add("root@example.com", "admin")
    _add("leaver@example.com", "staff")
    cookie = sign_in(TestClient(create_app()), "leaver@example.com", PASSWORD)
    token = _token("leaver@example.com")
    assert opens_admin(cookie) and _api_status(token) == 200
    result = runner.invoke(app, ["users", "deactivate", "leaver@example.com"])
    assert result.exit_code == 0, result.output
    assert not opens_admin(cookie) and _api_status(token) == 401
    assert try_sign_in(TestClient(create_app()), "leaver@example.com", PASSWORD) == 401
    listed = runner.invoke(app, ["users", "ls"]).output
    assert re.search(r"leaver@example\.com\s.*staff\s.*no\s", listed), listed
    # coming back: signing in works again, but the revoked token stays revoked
    assert runner.invoke(app, ["users", "activate", "leaver@example.com"]).exit_code == 0
    assert _api_status(token) == 401
    sign_in(TestClient(create_app()), "leaver@example.com", PASSWORD)


def test_last_active_admin_cannot_be_deactivated_or_demoted(db_url: str) -> None:
    _add("root@example.com", "admin")
    for args in (["deactivate", "root@example.com"], ["role", "root@example.com", "staff"]):
        refused = runner.invoke(app, ["users", *args])
        assert refused.exit_code == 1 and "last active admin" in refused.output, refused.output
    with session_scope() as session:
        user = session.scalar(select(User))
        assert user is not None and user.active and user.role is Role.ADMIN
    _add("second@example.com", "admin")
    assert runner.invoke(app, ["users", "role", "root@example.com", "staff"]).exit_code == 0
    refused = runner.invoke(app, ["users", "deactivate", "second@example.com"])
    assert refused.exit_code == 1 and "last active admin" in refused.output
    bad = runner.invoke(app, ["users", "role", "second@example.com", "owner"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
    missing = runner.invoke(app, ["users", "deactivate", "nobody@example.com"])
    assert missing.exit_code == 1 and "no user nobody@example.com" in missing.output


def test_role_change_applies_to_an_open_session(db_url: str) -> None:
    _add("root@example.com", "admin")
    _add("editor@example.com", "staff")
    cookie = sign_in(TestClient(create_app()), "editor@example.com", PASSWORD)
    assert not opens_admin(cookie, "/admin/suppressions")
    assert runner.invoke(app, ["users", "role", "editor@example.com", "admin"]).exit_code == 0
    assert opens_admin(cookie, "/admin/suppressions")
    assert runner.invoke(app, ["users", "role", "editor@example.com", "staff"]).exit_code == 0
    assert not opens_admin(cookie, "/admin/suppressions")


def test_reset_password_prompted_and_one_time(db_url: str) -> None:
    _add("root@example.com", "admin")
    _add("forgetful@example.com", "staff")
    cookie = sign_in(TestClient(create_app()), "forgetful@example.com", PASSWORD)
    new = "a brand new passphrase"
    result = runner.invoke(app, ["users", "reset-password", "forgetful@example.com"], input=f"{new}\n{new}\n")
    assert result.exit_code == 0 and new not in result.output, result.output
    assert not opens_admin(cookie)
    assert try_sign_in(TestClient(create_app()), "forgetful@example.com", PASSWORD) == 401
    sign_in(TestClient(create_app()), "forgetful@example.com", new)
    short = runner.invoke(app, ["users", "reset-password", "forgetful@example.com"], input="short\nshort\n")
    assert short.exit_code == 1 and "12 characters" in short.output
    generated = runner.invoke(app, ["users", "reset-password", "forgetful@example.com", "--generate"])
    assert generated.exit_code == 0, generated.output
    one_time = generated.output.splitlines()[1].strip()
    assert len(one_time) >= 20
    browser = TestClient(create_app())
    assert browser.post("/admin/login", data={"email": "forgetful@example.com", "password": one_time,
                                              "csrf_token": csrf(browser)},
                        follow_redirects=False).headers["location"] == "/admin/account"
    # the one-time password opens the password page only
    assert browser.get("/admin/issues", follow_redirects=False).headers["location"] == "/admin/account"
    changed = browser.post("/admin/account/password", data={
        "csrf_token": csrf(browser, "/admin/account"), "current": one_time, "password": new + "!",
        "confirm": new + "!"}, follow_redirects=False)
    assert changed.status_code == 303
    assert browser.get("/admin/issues", follow_redirects=False).status_code == 200
    assert try_sign_in(TestClient(create_app()), "forgetful@example.com", one_time) == 401


def test_list_and_revoke_tokens(db_url: str) -> None:
    _add("root@example.com", "admin")
    _add("bot@example.com", "staff")
    first, second = _token("bot@example.com"), _token("bot@example.com")
    listed = runner.invoke(app, ["users", "tokens", "bot@example.com"])
    ids = re.findall(r"^\W*(\d+)\s", listed.output, flags=re.MULTILINE)
    assert listed.exit_code == 0 and len(ids) == 2 and first not in listed.output
    with session_scope() as session:
        first_id = session.scalar(select(ApiToken.id).where(
            ApiToken.token_hash == hashlib.sha256(first.encode()).hexdigest()))
    result = runner.invoke(app, ["users", "token", "revoke", str(first_id)])
    assert result.exit_code == 0, result.output
    assert _api_status(first) == 401 and _api_status(second) == 200
    for bad in ("999", str(2**70), "0"):
        refused = runner.invoke(app, ["users", "token", "revoke", bad])
        assert refused.exit_code == 1 and "No such token" in refused.output, (bad, refused.output)
    assert runner.invoke(app, ["users", "token", "revoke", "abc"]).exit_code == 2
    assert _api_status(second) == 200


def test_sessions_listed_and_ended_by_an_operator(db_url: str) -> None:
    _add("root@example.com", "admin")
    cookie = sign_in(TestClient(create_app(), client=("203.0.113.9", 4000)), "root@example.com", PASSWORD)
    listed = runner.invoke(app, ["users", "sessions", "root@example.com"])
    assert listed.exit_code == 0 and "203.0.113.9" in listed.output
    ended = runner.invoke(app, ["users", "signout", "root@example.com"])
    assert ended.exit_code == 0 and "ended 1 session" in ended.output
    assert not opens_admin(cookie)
