"""`newsletter lists` options for sign-up from other sites and private archives, as an operator runs them."""

from __future__ import annotations

from typer.testing import CliRunner

from mailer.db import session_scope
from newsletter.cli import app
from subscribers import mailing_lists
from subscribers.models import MailingList

runner = CliRunner()


def _list() -> MailingList:
    with session_scope() as session:
        return mailing_lists.get_list(session, "weekly")


def test_create_set_and_show_embedding_and_archive(sqlite_url: str) -> None:
    created = runner.invoke(app, ["lists", "create", "weekly", "--name", "Weekly"])
    assert created.exit_code == 0, created.output
    weekly = _list()
    assert weekly.embeddable and weekly.allowed_origins == [] and not weekly.archive_private  # the defaults
    changed = runner.invoke(app, ["lists", "set", "weekly", "--embed-origin", "https://Blog.example.org/",
                                  "--embed-origin", "http://localhost:4000", "--thank-you-url",
                                  "https://blog.example.org/thanks", "--archive-private"])
    assert changed.exit_code == 0, changed.output
    weekly = _list()
    assert weekly.allowed_origins == ["https://blog.example.org", "http://localhost:4000"]
    assert weekly.thank_you_url == "https://blog.example.org/thanks" and weekly.archive_private
    shown = runner.invoke(app, ["lists", "show", "weekly"])
    assert "https://blog.example.org, http://localhost:4000" in shown.output and "archive: private" in shown.output
    assert runner.invoke(app, ["lists", "set", "weekly", "--not-embeddable", "--any-origin",
                               "--thank-you-url", ""]).exit_code == 0
    weekly = _list()
    assert not weekly.embeddable and weekly.allowed_origins == [] and weekly.thank_you_url is None


def test_bad_values_are_refused_with_a_message_and_nothing_changes(sqlite_url: str) -> None:
    runner.invoke(app, ["lists", "create", "weekly", "--name", "Weekly", "--embed-origin", "https://a.example"])
    for args in (["--embed-origin", "https://a.example/page"], ["--embed-origin", "a.example"],
                 ["--thank-you-url", "javascript:alert(1)"]):
        result = runner.invoke(app, ["lists", "set", "weekly", *args])
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    both = runner.invoke(app, ["lists", "set", "weekly", "--any-origin", "--embed-origin", "https://b.example"])
    assert both.exit_code == 2
    weekly = _list()
    assert weekly.allowed_origins == ["https://a.example"] and weekly.thank_you_url is None
