"""`newsletter render` and `newsletter check` as a user runs them."""

from __future__ import annotations

import email
from email import policy
from pathlib import Path

from typer.testing import CliRunner

from newsletter.cli import app
from tests.mailer.test_issue import EXAMPLE, GOOD

runner = CliRunner()


def test_render_writes_the_four_files(tmp_path: Path) -> None:
    result = runner.invoke(app, ["render", str(EXAMPLE), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    for name in ("email.html", "email.txt", "web.html", "message.eml"):
        assert (tmp_path / "out" / name).stat().st_size > 1000
        assert name in result.output and "KB" in result.output
    message = email.message_from_bytes((tmp_path / "out" / "message.eml").read_bytes(), policy=policy.default)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["List-Unsubscribe"].startswith("<http://testserver/unsubscribe/")
    assert message.get_body(("plain",)).get_content().startswith("Digital Digest Weekly")
    assert "Sample Reader" in message.get_body(("html",)).get_content()


def test_render_bad_issue_exits_1_with_located_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.md"
    bad.write_text(GOOD.replace("(https://example.com/a)", "(page.html)"))
    result = runner.invoke(app, ["render", str(bad), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert f"{bad}:12: relative or unsupported link 'page.html'" in result.output
    assert not (tmp_path / "out").exists()


def test_check_reports_ok_and_counts() -> None:
    result = runner.invoke(app, ["check", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert "8 stories" in result.output
