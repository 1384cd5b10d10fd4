"""SMTP bounces: a real send through SMTP, DSNs (built here and real-world MTA samples) delivered over SMTP to
our bounce receiver, matched by VERP, classified hard/soft, and applied by the same policy."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from mailer.db import session_scope
from mailer.events.dsn import failures
from newsletter.cli import app
from subscribers.models import Subscriber, Suppression, SuppressionReason
from tests.support.audience import make_audience, started_send
from tests.support.imap_server import IMAPServer, Mailbox
from tests.support.smtp_sink import SMTPSink
from tests.support.workers import free_port
from worker import tasks
from worker.bounces import receiver
from worker.models import Delivery

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "dsn"


def build_dsn(verp: str, rcpt: str, status: str, action: str = "failed", serial: int = 0) -> bytes:
    """A minimal RFC 3464 report, as a test MTA would produce it."""
    return f"""From: MAILER-DAEMON@test-mta.example
To: {verp}
Subject: Delivery Status Notification
Message-ID: <dsn-{serial}-{rcpt}@test-mta.example>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b1"

--b1
Content-Type: text/plain

Could not deliver to {rcpt}.

--b1
Content-Type: message/delivery-status

Reporting-MTA: dns; test-mta.example

Final-Recipient: rfc822; {rcpt}
Action: {action}
Status: {status}
Diagnostic-Code: smtp; {status} test

--b1--
""".encode()


@pytest.fixture
def smtp_send(db_url: str, settings) -> Iterator[dict[str, str]]:
    sink = SMTPSink().start()
    settings.smtp_host, settings.smtp_port = "127.0.0.1", sink.port
    settings.bounce_domain = "bounces.news.example.com"
    audience = make_audience(8, pending=0, unsubscribed=0, suppressed=0)
    sink.reject(audience.confirmed[7])  # refused at RCPT: a failed row, no DSN needed
    with session_scope() as session:
        send_id = started_send(session, audience.issue_id, audience.list_id, transport="smtp")
    tasks.plan_send.delay(send_id).get()
    verp = {r.rcpt: r.mail_from for r in sink.received}
    assert len(verp) == 7 and all(v.endswith("@bounces.news.example.com") for v in verp.values())
    with session_scope() as session:
        failed = session.scalar(select(Delivery.error).where(Delivery.status == "failed"))
    assert failed is not None and failed.startswith("550")
    yield verp
    sink.stop()


def deliver(port: int, verp: str, raw: bytes) -> None:
    wire = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")  # smtplib sends bytes as they are
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail("", [verp], wire)


def reasons() -> dict[str, SuppressionReason]:
    with session_scope() as session:
        return dict(session.execute(select(Suppression.email, Suppression.reason)).tuples().all())


def test_dsns_through_bounces_receive_suppress_the_right_people(smtp_send: dict[str, str], settings) -> None:
    settings.soft_bounce_limit = 2
    port = free_port()
    server = receiver("127.0.0.1", port)
    server.start()
    try:
        addresses = sorted(smtp_send)
        samples = ["postfix-user-unknown.eml", "exim-mailbox-full.eml", "exchange-delayed.eml",
                   "gmail-style-no-such-user.eml", "qmail-prose-only.eml"]
        for address, sample in zip(addresses, samples, strict=False):
            raw = (SAMPLES / sample).read_text().replace("{verp}", smtp_send[address]).replace("{rcpt}", address)
            deliver(port, smtp_send[address], raw.encode())
        built = addresses[5]
        deliver(port, smtp_send[built], build_dsn(smtp_send[built], built, "5.1.1"))
        soft_twice = addresses[6]
        for n in range(2):
            deliver(port, smtp_send[soft_twice], build_dsn(smtp_send[soft_twice], soft_twice, "4.2.2", "delayed", n))
        with pytest.raises(smtplib.SMTPRecipientsRefused):  # a forged VERP address is refused at RCPT
            deliver(port, smtp_send[addresses[1]].replace("bounces+", "bounces+1"), b"Subject: x\n\nforged")
    finally:
        server.stop()
    got = {k: v.value for k, v in reasons().items()}
    assert got == {addresses[0]: "hard_bounce", addresses[3]: "hard_bounce", addresses[4]: "hard_bounce",
                   addresses[5]: "hard_bounce", soft_twice: "soft_bounce_limit"}
    with session_scope() as session:
        bounces = dict(session.execute(select(Subscriber.email, Delivery.bounce).join(Delivery)).tuples().all())
    assert bounces[addresses[1]] == "soft" and bounces[addresses[2]] == "soft"  # mailbox full, delayed
    assert bounces[addresses[0]] == "hard"


@pytest.mark.parametrize(("sample", "status", "hard"), [
    ("postfix-user-unknown.eml", "5.1.1", True), ("exim-mailbox-full.eml", "5.2.2", False),
    ("exchange-delayed.eml", "4.4.7", False), ("gmail-style-no-such-user.eml", "5.1.1", True),
    ("qmail-prose-only.eml", "5.1.1", True)])
def test_samples_classified(sample: str, status: str, hard: bool) -> None:
    raw = (SAMPLES / sample).read_text().replace("{verp}", "bounces+1-x@b.example").replace("{rcpt}", "r@example.org")
    [failure] = failures(raw.encode())
    assert (failure.recipient, failure.status, failure.hard) == ("r@example.org", status, hard)


def test_bounces_fetch_reads_the_imap_mailbox(smtp_send: dict[str, str], settings) -> None:
    addresses = sorted(smtp_send)
    box = Mailbox("bounces", "mailbox-secret", [
        (SAMPLES / "postfix-user-unknown.eml").read_text().replace("{verp}", smtp_send[addresses[0]])
        .replace("{rcpt}", addresses[0]).replace("\n", "\r\n").encode(),
        build_dsn(smtp_send[addresses[1]], addresses[1], "5.1.1").replace(b"\n", b"\r\n")])
    server = IMAPServer(box).start()
    try:
        settings.imap_host, settings.imap_port, settings.imap_ssl = "127.0.0.1", server.port, False
        settings.imap_user = "bounces"
        settings.imap_password = __import__("pydantic").SecretStr("mailbox-secret")
        result = CliRunner().invoke(app, ["bounces", "fetch"])
        assert result.exit_code == 0, result.output
        assert "2 bounce event(s) stored" in result.output
        assert box.seen == {1, 2} and box.logins == 1
        again = CliRunner().invoke(app, ["bounces", "fetch"])  # nothing unseen is left
        assert "0 bounce event(s) stored" in again.output
    finally:
        server.stop()
    assert {k: v.value for k, v in reasons().items()} == {addresses[0]: "hard_bounce", addresses[1]: "hard_bounce"}
