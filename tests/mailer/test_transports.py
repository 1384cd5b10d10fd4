"""Transports against real peers: the `sendgrid` client over HTTP to the stand-in, smtplib to aiosmtpd."""

from __future__ import annotations

import base64
import email
import json
import threading
import time
from collections.abc import Iterator
from email import policy
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailer.batch import Content, Recipient, TransportError
from mailer.dkim_signing import DkimSigner, load_key
from mailer.message import personalize
from mailer.placeholders import Key
from mailer.settings import get_settings, reset_settings
from mailer.transports import get_transport
from mailer.transports.sendgrid import SendGridTransport
from mailer.transports.smtp import SMTPTransport
from mailer.verp import read_verp, verp_address
from tests.support.sendgrid_standin import API_KEY, SendGridStandIn, render
from tests.support.smtp_sink import SMTPSink

CONTENT = Content(subject="Weekly: news", html="<p>Hi __NLH_NAME__ <a href='__NLH_UNSUBSCRIBE_URL__'>u</a></p>",
                  text="Hi __NLT_NAME__, leave: __NLT_UNSUBSCRIBE_URL__", from_email="digest@news.example.com",
                  from_name="Digest", list_id="Weekly <weekly.news.example.com>", send_id=7)


def recipients(n: int) -> list[Recipient]:
    return [Recipient(email=f"r{i}@example.com", delivery_id=100 + i,
                      unsubscribe_url=f"https://news.example.com/unsubscribe/t{i}",
                      values={Key.NAME: f"R&{i}", Key.UNSUBSCRIBE_URL: f"https://news.example.com/unsubscribe/t{i}"})
            for i in range(n)]


@pytest.fixture
def standin() -> Iterator[SendGridStandIn]:
    server = SendGridStandIn().start()
    yield server
    server.stop()


def sendgrid(standin: SendGridStandIn, **kwargs: object) -> SendGridTransport:
    options = {"host": standin.url, "timeout_s": 2.0, "max_attempts": 4, "max_retry_s": 10.0} | kwargs
    return SendGridTransport(API_KEY, **options)  # type: ignore[arg-type]


def test_sendgrid_one_call_per_batch_with_substitutions_headers_and_custom_args(standin: SendGridStandIn) -> None:
    batch = recipients(250)
    results = sendgrid(standin).send(CONTENT, batch)
    assert standin.state.requests == 1 and all(r.ok for r in results)
    assert len({r.message_id for r in results}) == 1 and results[0].message_id
    body = standin.state.bodies[0]
    for index in (0, 3, 249):  # what each recipient reads is exactly their own personalised copy
        html, text = personalize(CONTENT, batch[index])
        assert render(body, index) == (CONTENT.subject, text, html)
    third = body["personalizations"][3]
    assert third["to"] == [{"email": "r3@example.com"}]
    assert third["headers"] == {"List-Unsubscribe": "<https://news.example.com/unsubscribe/t3>",
                                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    assert third["custom_args"] == {"delivery_id": "103"} and body["custom_args"] == {"send_id": "7"}
    assert {(a.send_id, a.delivery_id) for a in standin.accepted[3:4]} == {("7", "103")}
    assert body["headers"] == {"List-Id": "Weekly <weekly.news.example.com>"}


def test_sendgrid_tables_carry_only_what_differs(standin: SendGridStandIn) -> None:
    """A value shared by the whole batch is filled into the content once; a value that needs no HTML escaping
    for anyone travels once, not once per part; a name that does keep both spellings."""
    shared = "https://news.example.com/archive/2026-11-27"
    content = Content(subject="Hi __NLT_NAME__", html="<p>__NLH_NAME__ __NLH_UNSUBSCRIBE_URL__ __NLH_WEB_URL__</p>",
                      text="__NLT_NAME__ __NLT_UNSUBSCRIBE_URL__ __NLT_WEB_URL__", from_email="d@news.example.com")
    batch = [Recipient(email=f"p{i}@example.com", unsubscribe_url=f"https://news.example.com/u/t{i}",
                       values={Key.NAME: "O'Brien & Co" if i == 1 else f"P{i}", Key.WEB_URL: shared,
                               Key.UNSUBSCRIBE_URL: f"https://news.example.com/u/t{i}"}) for i in range(3)]
    sendgrid(standin).send(content, batch)
    body = standin.state.bodies[0]
    assert shared in body["content"][1]["value"] and "WEB_URL" not in json.dumps(body)
    assert set(body["personalizations"][0]["substitutions"]) == {  # no EMAIL: empty for all, so folded too
        "__NLH_NAME__", "__NLT_NAME__", "__NLT_UNSUBSCRIBE_URL__"}
    for index, recipient in enumerate(batch):
        html, text = personalize(content, recipient)
        assert render(body, index) == (f"Hi {recipient.values[Key.NAME]}", text, html)
    assert render(body, 1)[2].startswith("<p>O&#x27;Brien &amp; Co https://news.example.com/u/t1 ")


def test_sendgrid_refuses_more_than_1000(standin: SendGridStandIn) -> None:
    with pytest.raises(ValueError, match="at most 1000"):
        sendgrid(standin).send(CONTENT, recipients(1001))
    assert standin.state.requests == 0


def test_sendgrid_retries_429_honouring_retry_after_then_succeeds(standin: SendGridStandIn) -> None:
    standin.behaviour.share_429 = 1.0
    standin.behaviour.retry_after = "1"
    transport = sendgrid(standin)

    def heal() -> None:
        time.sleep(1.5)
        standin.behaviour.share_429 = 0.0

    threading.Thread(target=heal, daemon=True).start()
    started = time.monotonic()
    results = transport.send(CONTENT, recipients(3))
    assert all(r.ok for r in results)
    assert time.monotonic() - started >= 1.0  # waited as told, not hammering
    assert standin.state.rejected[429] >= 1 and standin.state.requests >= 2


def test_sendgrid_5xx_exhausted_is_retryable(standin: SendGridStandIn) -> None:
    standin.behaviour.share_503 = 1.0
    with pytest.raises(TransportError) as info:
        sendgrid(standin, max_attempts=3, max_retry_s=5.0).send(CONTENT, recipients(2))
    assert info.value.retryable and not info.value.fatal and standin.state.requests == 3


def test_sendgrid_400_fails_batch_with_sendgrid_text(standin: SendGridStandIn) -> None:
    duplicate = recipients(2)
    duplicate[1] = Recipient(email="r0@example.com", values={}, delivery_id=2)
    results = sendgrid(standin).send(CONTENT, duplicate)
    assert [r.ok for r in results] == [False, False] and not results[0].retryable
    assert "Each email address in the personalization block should be unique" in (results[0].error or "")


def test_sendgrid_401_is_fatal(standin: SendGridStandIn) -> None:
    transport = SendGridTransport("SG.wrong", host=standin.url, timeout_s=2.0)
    with pytest.raises(TransportError) as info:
        transport.send(CONTENT, recipients(1))
    assert info.value.fatal and "authorization" in str(info.value)


def test_sendgrid_timeout_is_retryable(standin: SendGridStandIn) -> None:
    standin.behaviour.delay_s = 1.0
    with pytest.raises(TransportError) as info:
        sendgrid(standin, timeout_s=0.2, max_attempts=2, max_retry_s=3.0).send(CONTENT, recipients(1))
    assert info.value.retryable


@pytest.fixture
def sink() -> Iterator[SMTPSink]:
    server = SMTPSink().start()
    yield server
    server.stop()


def smtp(sink: SMTPSink, **kwargs: object) -> SMTPTransport:
    return SMTPTransport("127.0.0.1", sink.port, message_id_domain="news.example.com",
                        default_return_path="digest@news.example.com", **kwargs)  # type: ignore[arg-type]


def test_smtp_per_recipient_outcomes_and_verp(sink: SMTPSink) -> None:
    sink.reject("r1@example.com")
    sink.reject("r2@example.com", "452 4.2.2 Mailbox full, try later")
    batch = [Recipient(email=r.email, values=r.values, delivery_id=r.delivery_id, unsubscribe_url=r.unsubscribe_url,
                       return_path=verp_address(r.delivery_id or 0)) for r in recipients(4)]
    transport = smtp(sink)
    results = transport.send(CONTENT, batch)
    transport.close()
    assert [(r.ok, r.retryable) for r in results] == [(True, False), (False, False), (False, True), (True, False)]
    assert results[1].error is not None and results[1].error.startswith("550")
    assert sorted(sink.counts()) == ["r0@example.com", "r3@example.com"]
    received = sink.received[0]
    assert read_verp(received.mail_from) == 100
    message = received.message
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "R&amp;0" in message.get_body(("html",)).get_content()


def test_verp_rejects_tampering() -> None:
    address = verp_address(12345)
    assert read_verp(address) == 12345
    local, domain = address.split("@")
    forged = local.replace(local.split("+")[1].split("-")[0], "9iy") + "@" + domain
    assert read_verp(forged) is None
    assert read_verp("someone@example.com") is None


def test_smtp_header_injection_impossible(sink: SMTPSink) -> None:
    evil = Content(subject="Hi\r\nBcc: victim@example.com", html="<p>x</p>", text="x",
                   from_email="digest@news.example.com", from_name="Digest\r\nBcc: victim@example.com")
    transport = smtp(sink)
    transport.send(evil, [Recipient(email="r@example.com", values={})])
    transport.close()
    message = sink.received[0].message
    assert message["Bcc"] is None and sink.counts() == {"r@example.com": 1}
    assert "Bcc" in str(message["Subject"])  # folded into the subject text, not a header


def test_smtp_dkim_signature_verifies(sink: SMTPSink, tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_path = tmp_path / "dkim.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)

    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    transport = smtp(sink, dkim=DkimSigner([load_key(key_path, "nl2026", "news.example.com")]))
    transport.send(CONTENT, recipients(1))
    transport.close()
    data = sink.received[0].data

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"nl2026._domainkey.news.example.com."
        return record

    assert dkim.verify(data, dnsfunc=dns)
    assert not dkim.verify(data.replace(b"Weekly: news", b"Weekly: NEWS"), dnsfunc=dns)
    assert email.message_from_bytes(data, policy=policy.default)["DKIM-Signature"]


def test_smtp_unreachable_is_retryable() -> None:
    transport = SMTPTransport("127.0.0.1", 1, message_id_domain="x.example", default_return_path="a@x.example",
                              timeout_s=1)
    with pytest.raises(TransportError) as info:
        transport.send(CONTENT, recipients(1))
    assert info.value.retryable


def test_settings_build_transports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_SENDGRID_API_KEY", API_KEY)
    reset_settings()
    assert get_transport(get_settings(), "sendgrid").name == "sendgrid"
    assert get_transport(get_settings(), "smtp").name == "smtp"
