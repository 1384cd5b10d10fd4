"""`newsletter welcome` as an operator runs it: add, ls, rm, run, and the import's --welcome; bad input gets a
message and changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from mailer.db import session_scope
from newsletter.cli import app
from subscribers.models import Subscription
from tests.support.audience import EXAMPLE
from tests.support.mailbox import outbox_messages
from worker import welcome

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


def steps() -> list[tuple[int, str]]:
    with session_scope() as session:
        return [(step.delay_seconds, str(step.send_id)) for step in welcome.steps_of(session, 1)]


@pytest.fixture
def weekly(db_url: str, tmp_path: Path) -> Path:
    assert invoke("lists", "create", "weekly", "--name", "Weekly")[0] == 0
    issue = tmp_path / "hello.md"
    issue.write_text(EXAMPLE.read_text().replace("subject: \"Digital Digest Weekly: chips get greener, passwords get "
                                                 "rarer\"", "subject: \"Hello\"\nslug: hello", 1))
    return issue


def test_add_list_remove_and_run(weekly: Path, tmp_path: Path) -> None:
    code, output = invoke("welcome", "add", "weekly", str(weekly), "--after", "2d")  # a file: stored, then added
    assert code == 0 and "welcome email 1 of weekly: 'hello' 2d after confirmation" in output, output
    code, output = invoke("welcome", "add", "weekly", "hello", "--after", "0")  # a stored issue's slug
    assert code == 0 and "welcome email 1 of weekly: 'hello' at once" in output, output
    code, output = invoke("welcome", "ls", "weekly")
    lines = output.splitlines()
    assert code == 0 and lines[0].startswith("1. after 0: hello (send 2, running) sent 0") and \
        lines[1].startswith("2. after 2d: hello (send 1, running)"), output
    csv = tmp_path / "people.csv"
    csv.write_text("email,name\nann@example.com,Ann\n")
    code, output = invoke("subscribers", "import", str(csv), "--list", "weekly", "--confirmed", "--consent-source",
                          "fair 2026", "--welcome")
    assert code == 0, output
    with session_scope() as session:
        assert session.scalar(select(Subscription.welcome)) is True
    assert invoke("welcome", "run") == (0, "1 welcome emails admitted\n")
    assert [str(m["Subject"]) for m in outbox_messages()] == ["Hello"]
    assert invoke("welcome", "rm", "weekly", "2")[0] == 0
    assert [delay for delay, _ in steps()] == [0]
    code, output = invoke("welcome", "ls", "weekly")
    assert code == 0 and output.startswith("1. after 0: hello (send 2, running) sent 1, waiting 0") and \
        len(output.splitlines()) == 1, output


def test_imports_are_not_welcomed_by_default(weekly: Path, tmp_path: Path) -> None:
    csv = tmp_path / "people.csv"
    csv.write_text("email,name\nann@example.com,Ann\n")
    assert invoke("subscribers", "import", str(csv), "--list", "weekly", "--confirmed", "--consent-source", "x")[0] == 0
    with session_scope() as session:
        assert session.scalar(select(Subscription.welcome)) is False


@pytest.mark.parametrize("args", [
    ["--after", "2x"], ["--after", ""], ["--after", "99999999999999d"], ["--after", "-1d"], ["--after", "1" * 5000],
    ["--after", "2d", "--since", "yesterday"], ["--after", "2d", "--since", "2999-01-01"],
])
def test_bad_delays_and_times_are_refused(weekly: Path, args: list[str]) -> None:
    code, output = invoke("welcome", "add", "weekly", str(weekly), *args)
    assert code in (1, 2) and output.strip(), output
    assert steps() == []


def test_unknown_list_issue_or_position_is_refused(weekly: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.md"
    broken.write_text("---\nsubject: [unclosed\n---\n")
    for args in (["add", "nope", str(weekly), "--after", "0"], ["add", "weekly", "no-such-issue", "--after", "0"],
                 ["add", "weekly", str(tmp_path / "missing.md"), "--after", "0"],
                 ["add", "weekly", str(broken), "--after", "0"],
                 ["ls", "nope"], ["rm", "weekly", "1"], ["rm", "weekly", "0"], ["rm", "nope", "1"]):
        code, output = invoke("welcome", *args)
        assert code == 1 and output.strip(), (args, output)
    assert invoke("welcome", "rm", "weekly", "one")[0] == 2
    assert invoke("welcome", "ls", "weekly") == (0, "weekly has no welcome series.\n")
