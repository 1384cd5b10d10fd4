"""The CLI given hostile or mistaken input: user data that looks like Rich markup, a schedule in the past."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from mailer.db import session_scope
from newsletter.cli import app
from subscribers import mailing_lists, service
from subscribers.models import ConsentSource
from tests.mailer.test_issue import EXAMPLE
from worker.models import Send

runner = CliRunner()
MARKUP = "[/red]"


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exception is None, f"{args}: {result.exception!r}\n{result.output}"
    assert result.exit_code == 0, result.output
    return result.output


def test_markup_in_user_data_is_printed_as_text(sqlite_url: str, tmp_path: Path) -> None:
    _ok(["lists", "create", "brackets", "--name", MARKUP])
    with session_scope() as session:
        service.subscribe(session, mailing_lists.get_list(session, "brackets"), "odd@example.com", "[bold]Ann[/]",
                          source=ConsentSource.ADMIN, confirmed=True, consent_note="[link=x]test[/link]")
    assert MARKUP in _ok(["lists", "ls"])
    assert MARKUP in _ok(["lists", "show", "brackets"])
    assert "[bold]Ann[/]" in _ok(["subscribers", "ls", "--list", "brackets"])
    missing = runner.invoke(app, ["lists", "show", "[/]nope"])  # the error path prints user data too
    assert missing.exit_code == 1 and missing.exception is not None and isinstance(missing.exception, SystemExit)
    csv = tmp_path / "[bold][red].csv"
    csv.write_text("email,name\nx@example.com,[/bold]\n")
    assert "imported 1" in _ok(["subscribers", "import", str(csv), "--list", "brackets"])


@pytest.mark.parametrize("when", ["2020-01-01T08:00", "2026-01-01T00:00+00:00", "1999-12-31"])
def test_send_at_a_past_time_is_refused_and_stores_nothing(sqlite_url: str, when: str) -> None:
    _ok(["lists", "create", "weekly", "--name", "Weekly"])
    result = runner.invoke(app, ["send", str(EXAMPLE), "--list", "weekly", "--at", when])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "in the past" in result.output and "Nothing was sent" in result.output
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Send)) == 0


def test_send_at_a_future_time_is_scheduled(sqlite_url: str) -> None:
    _ok(["lists", "create", "weekly", "--name", "Weekly"])
    assert "scheduled for 2999-01-01T08:00" in _ok(["send", str(EXAMPLE), "--list", "weekly",
                                                     "--at", "2999-01-01T08:00"])
