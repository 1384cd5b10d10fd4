"""`newsletter render`'s message.eml is what a send mails, byte for byte but for the personal values; the base URL
links are checked where a send is created and by `newsletter check`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mailer.db import session_scope
from mailer.settings import get_settings
from newsletter.cli import app
from subscribers import mailing_lists, service
from subscribers.models import ConsentSource
from tests.mailer.test_issue import EXAMPLE
from tests.support.mailbox import outbox_messages
from worker.models import Send

runner = CliRunner()
TOKEN = re.compile(rb"/(unsubscribe|preferences)/[A-Za-z0-9._=\r\n-]+")


def _normalise(data: bytes) -> bytes:
    """Blank what differs between two copies of a send that is not content: Date, Message-ID (and the boundary
    derived from it), the signed tokens of the personal links, and the send's number in Feedback-ID."""
    message_id = re.search(rb"^Message-ID: <([0-9a-f]+)@", data, re.M)
    assert message_id
    data = data.replace(message_id.group(1), b"MESSAGEID")
    data = re.sub(rb"^Date: .*$", b"Date: DATE", data, flags=re.M)
    data = re.sub(rb"Feedback-ID: send\d+:", b"Feedback-ID: sendN:", data)
    return data


@pytest.fixture
def issue_file(db_url: str, tmp_path: Path) -> Path:
    with session_scope() as session:
        mailing_list = mailing_lists.create_list(session, "weekly", "Digital Digest Weekly", double_opt_in=False,
                                                 look=mailing_lists.ListLook(language="de", accent_colour="#7c2d12",
                                                                 postal_address="Wochenblatt, Hafenstraße 1"))
        service.subscribe(session, mailing_list, "reader@example.com", "Sample Reader", source=ConsentSource.ADMIN)
    path = tmp_path / "issue.md"
    path.write_text(EXAMPLE.read_text().replace("---\n", "---\nlist: weekly\n", 1))
    return path


def test_render_sample_is_what_the_send_mails(issue_file: Path, tmp_path: Path) -> None:
    rendered = runner.invoke(app, ["render", str(issue_file), "--out", str(tmp_path / "out")])
    assert rendered.exit_code == 0, rendered.output
    sample = (tmp_path / "out" / "message.eml").read_bytes()
    sent = runner.invoke(app, ["send", str(issue_file)])
    assert sent.exit_code == 0, sent.output
    [eml] = sorted(Path(get_settings().outbox_dir).glob("*.eml"))  # type: ignore[arg-type]
    real = eml.read_bytes()
    assert b"Abbestellen" in real and b"#7c2d12" in real and b"Wochenblatt, Hafenstra" in real
    # Same length lines everywhere (the subscriber is #1 on list #1, the sample #0 on #0: tokens of equal length),
    # so the quoted-printable layout is identical; outside the two tokens every byte is.
    sample_lines, real_lines = _normalise(sample).split(b"\r\n"), _normalise(real).split(b"\r\n")
    assert [len(line) for line in sample_lines] == [len(line) for line in real_lines]
    differing = [(a, b) for a, b in zip(sample_lines, real_lines, strict=True) if a != b]
    for a, b in differing:
        assert TOKEN.sub(b"TOKEN", a) == TOKEN.sub(b"TOKEN", b) or (
            re.sub(rb"[A-Za-z0-9._-]", b"x", a) == re.sub(rb"[A-Za-z0-9._-]", b"x", b)), (a, b)
    assert 0 < len(differing) <= 12  # the List-Unsubscribe header and the three personal links in each part
    assert all(len(line) <= 76 for line in real.split(b"\r\n\r\n", 1)[1].split(b"\r\n"))
    [message] = outbox_messages()
    assert message["Feedback-ID"] == "send1:weekly:news.example.com"
    # email.html is the sample subscriber's copy, not a template with placeholders
    html = (tmp_path / "out" / "email.html").read_text()
    assert "Hallo Sample Reader," in html and "__NLH_" not in html


def test_base_url_is_refused_in_production_and_warned_otherwise(issue_file: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    result = runner.invoke(app, ["send", str(issue_file)])
    assert result.exit_code == 0 and "http://testserver" in result.output and "not https" in result.output
    monkeypatch.setenv("NEWSLETTER_ENV", "production")
    monkeypatch.setenv("NEWSLETTER_BASE_URL", "https://news.example.com:8443")
    get_settings.cache_clear()
    result = runner.invoke(app, ["send", str(issue_file), "--allow-resend"])
    assert result.exit_code == 1 and "on port 8443" in result.output and "Traceback" not in result.output
    with session_scope() as session:
        assert session.query(Send).count() == 1  # the refused send was never created
    check = runner.invoke(app, ["check", str(issue_file), "--no-measure"])
    assert check.exit_code == 1 and "error: NEWSLETTER_BASE_URL" in check.output
    monkeypatch.setenv("NEWSLETTER_BASE_URL", "https://news.example.com")
    get_settings.cache_clear()
    assert runner.invoke(app, ["check", str(issue_file), "--no-measure"]).exit_code == 0


@pytest.mark.browser
def test_check_reports_spam_score_contrast_and_clip(issue_file: Path) -> None:
    result = runner.invoke(app, ["check", str(issue_file)])
    assert result.exit_code == 0, result.output
    assert re.search(r"HTML \d+\.\d KB of Gmail's 102 KB clip", result.output)
    assert re.search(r"contrast: lowest \d+\.\d\d:1 over \d+ text runs", result.output)
    assert re.search(r"spam score: (0\.[0-5]|-?0\.0)", result.output) or "spamassassin is not installed" in (
        result.output)


def test_text_part_has_the_reason_the_address_and_room_to_breathe(issue_file: Path, tmp_path: Path) -> None:
    assert runner.invoke(app, ["render", str(EXAMPLE), "--out", str(tmp_path / "en")]).exit_code == 0
    text = (tmp_path / "en" / "email.txt").read_text()
    lines = text.splitlines()
    assert lines[0].startswith("Digital Digest Weekly") and set(lines[1]) == {"="} and lines[2] == ""
    assert lines[3].startswith("View in your browser: ") and lines[4] == "" and lines[5] == "Hi Sample Reader,"
    assert "You are receiving Digital Digest Weekly because you subscribed." in text
    assert get_settings().postal_address in text
