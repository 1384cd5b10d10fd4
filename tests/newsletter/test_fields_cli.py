"""`newsletter fields add|ls|rm`: definitions from the command line, mistakes as messages, never a traceback."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from mailer.db import session_scope
from newsletter.cli import app
from subscribers import fields, mailing_lists

runner = CliRunner()


@pytest.fixture
def weekly(db_url: str) -> str:
    with session_scope() as session:
        mailing_lists.create_list(session, "weekly", "Weekly")
    return db_url


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.output


def test_add_list_and_remove(weekly: str) -> None:
    assert _run("fields", "add", "weekly", "age", "--type", "number", "--default", "18", "--editable") == (
        0, "field age (number) on weekly\n")
    added = _run("fields", "add", "weekly", "plan", "--type", "oneof", "--option", "Free", "--option", "[/red]Pro")
    assert added[0] == 0
    code, table = _run("fields", "ls", "weekly")
    assert code == 0 and "age" in table and "18" in table and "Free, [/red]Pro" in table  # markup shown as text
    assert _run("fields", "rm", "weekly", "age") == (0, "field age removed from weekly\n")
    with session_scope() as session:
        assert fields.field_names(session, mailing_lists.get_list(session, "weekly").id) == {"plan"}


@pytest.mark.parametrize(("args", "message"), [
    (["add", "weekly", "email"], "'email' is reserved"),
    (["add", "weekly", "age", "--type", "number", "--default", "old"], "fields.age: 'old' is not a number"),
    (["add", "weekly", "x", "--type", "[bold]"], "unknown field type '[bold]'"),
    (["add", "weekly", "x", "--type", "oneof"], "needs at least one option"),
    (["add", "nope", "x"], "nope"),
    (["ls", "[/]nope"], "[/]nope"),
    (["rm", "weekly", "ghost"], "no field named 'ghost'"),
])
def test_mistakes_end_with_a_message(weekly: str, args: list[str], message: str) -> None:
    code, output = _run("fields", *args)
    assert code == 1 and message in output and "Traceback" not in output
