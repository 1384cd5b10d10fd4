"""`newsletter users ...` as an operator runs it: prompted password stored as argon2, tokens shown once."""

from __future__ import annotations

import hashlib

from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from mailer.db import session_scope
from newsletter.cli import app
from newsletter.models import ApiToken, Role, User
from newsletter.web.app import create_app

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
