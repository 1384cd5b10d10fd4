"""SMTP bounces: a real send through SMTP, DSNs (built here and real-world MTA samples) delivered over SMTP to
our bounce receiver, matched by VERP, classified hard/soft, and applied by the same policy."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from typer.testing import CliRunner

from mailer.db import session_scope
from mailer.events.dsn import failures
from newsletter.cli import app
from subscribers.models import ConsentEvent, ConsentKind, Subscriber, Suppression, SuppressionReason
from tests.support.audience import ROW_OF_PERSON, make_audience, started_send
from tests.support.imap_server import IMAPServer, Mailbox
from tests.support.smtp_sink import SMTPSink
from tests.support.workers import free_port
from worker import tasks
from worker.bounces import receiver
from worker.models import Delivery, ProviderEvent, UnmatchedBounce

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "dsn"
REFUSED = "c7@example.com"


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
    assert audience.confirmed[7] == REFUSED
    sink.reject(REFUSED)  # refused at RCPT: a failed row and a hard bounce, no DSN needed
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
                   addresses[5]: "hard_bounce", soft_twice: "soft_bounce_limit", REFUSED: "hard_bounce"}
    with session_scope() as session:
        bounces = dict(session.execute(select(Subscriber.email, Delivery.bounce).join(Delivery, ROW_OF_PERSON))
                       .tuples().all())
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
    assert {k: v.value for k, v in reasons().items()} == {addresses[0]: "hard_bounce", addresses[1]: "hard_bounce",
                                                          REFUSED: "hard_bounce"}


def build_report(to: str, recipients: list[str], status: str = "5.1.1", serial: int = 0) -> bytes:
    """One DSN listing several failed recipients (as an MTA reports a multi-recipient envelope)."""
    blocks = "\n".join(f"Final-Recipient: rfc822; {r}\nAction: failed\nStatus: {status}\n" for r in recipients)
    return f"""From: MAILER-DAEMON@test-mta.example
To: {to}
Subject: Undelivered Mail Returned to Sender
Message-ID: <report-{serial}@test-mta.example>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b1"

--b1
Content-Type: text/plain

Could not deliver.

--b1
Content-Type: message/delivery-status

Reporting-MTA: dns; test-mta.example

{blocks}
--b1--
""".encode()


def test_forged_report_to_own_verp_reaches_nobody_else(smtp_send: dict[str, str]) -> None:
    """A reader mails a DSN to their own VERP address (the Return-Path of the copy they got), naming others."""
    addresses = sorted(smtp_send)
    sender, victims = addresses[0], addresses[1:5]
    port = free_port()
    server = receiver("127.0.0.1", port)
    server.start()
    try:
        deliver(port, smtp_send[sender], build_report(smtp_send[sender], victims))
        deliver(port, smtp_send[sender], build_report(smtp_send[sender], [*victims, sender], serial=1))
    finally:
        server.stop()
    suppressed = {k: v.value for k, v in reasons().items() if k != REFUSED}
    assert suppressed == {sender: "hard_bounce"}  # the VERP token proves one delivery: the sender's own
    with session_scope() as session:
        bounces = dict(session.execute(select(Subscriber.email, Delivery.bounce).join(Delivery, ROW_OF_PERSON))
                       .tuples().all())
    assert all(bounces[v] is None for v in victims) and bounces[sender] == "hard"


def test_bounces_fetch_without_verp_suppresses_nobody_and_keeps_it(smtp_send: dict[str, str], settings) -> None:
    addresses = sorted(smtp_send)
    genuine, named, other = addresses[0], addresses[1], addresses[2]
    forged_mac = smtp_send[other][:-len("@bounces.news.example.com") - 3] + "zzz@bounces.news.example.com"
    box = Mailbox("bounces", "mailbox-secret", [m.replace(b"\n", b"\r\n") for m in [
        build_report("postmaster@news.example.com", [named], serial=1),  # no VERP address at all
        build_report(forged_mac, [other], serial=2),  # a VERP address whose token does not verify
        build_report(smtp_send[genuine], [genuine], serial=3)]])
    server = IMAPServer(box).start()
    try:
        settings.imap_host, settings.imap_port, settings.imap_ssl = "127.0.0.1", server.port, False
        settings.imap_user, settings.imap_password = "bounces", SecretStr("mailbox-secret")
        result = CliRunner().invoke(app, ["bounces", "fetch"])
        assert result.exit_code == 0, result.output
        assert {k: v.value for k, v in reasons().items() if k != REFUSED} == {genuine: "hard_bounce"}
        assert "1 bounce event(s) stored; 2 kept unmatched, nobody suppressed" in result.output
        listed = CliRunner().invoke(app, ["bounces", "ls", "--unmatched"])
    finally:
        server.stop()
    assert listed.exit_code == 0, listed.output
    assert listed.output.count("no genuine VERP address") == 2 and named in listed.output
    with session_scope() as session:
        kept = session.scalars(select(UnmatchedBounce).order_by(UnmatchedBounce.id)).all()
        assert [(k.via, k.named[0]["recipient"]) for k in kept] == [("imap", named), ("imap", other)]
        assert "Final-Recipient: rfc822; " + named in kept[0].raw


def test_refusal_at_rcpt_is_a_hard_bounce(db_url: str, settings) -> None:
    """550 5.1.1 at RCPT suppresses like a hard-bounce DSN, through the same policy; a full mailbox (5.2.2) is a
    soft bounce, counted only."""
    sink = SMTPSink().start()
    try:
        settings.smtp_host, settings.smtp_port = "127.0.0.1", sink.port
        audience = make_audience(3, pending=0, unsubscribed=0, suppressed=0)
        unknown, full, fine = audience.confirmed
        sink.reject(unknown)
        sink.reject(full, "552 5.2.2 <{a}>: Mailbox full")
        with session_scope() as session:
            send_id = started_send(session, audience.issue_id, audience.list_id, transport="smtp")
        tasks.plan_send.delay(send_id).get()
    finally:
        sink.stop()
    assert {k: v.value for k, v in reasons().items()} == {unknown: "hard_bounce"}
    with session_scope() as session:
        rows = {e: (s.value, b) for e, s, b in session.execute(
            select(Subscriber.email, Delivery.status, Delivery.bounce).join(Delivery, ROW_OF_PERSON)).tuples()}
        trail = session.execute(select(ConsentEvent.kind, ConsentEvent.detail, ProviderEvent.provider,
                                       ProviderEvent.payload)
                                .join(ProviderEvent, ProviderEvent.id == ConsentEvent.provider_event_id)
                                .join(Subscriber, Subscriber.id == ConsentEvent.subscriber_id)
                                .where(Subscriber.email == unknown, ConsentEvent.kind == ConsentKind.BOUNCED)).one()
    assert rows == {unknown: ("failed", "hard"), full: ("failed", "soft"), fine: ("sent", None)}
    kind, detail, provider, payload = trail
    assert (kind, detail["bounce"], provider, payload["_status"]) == (ConsentKind.BOUNCED, "hard", "smtp", "5.1.1")
