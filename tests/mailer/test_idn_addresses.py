"""Addresses with an internationalised domain go out in IDNA form on every path: the fast MIME serialiser, the
email package, the SMTP envelope (to a real aiosmtpd that does not offer SMTPUTF8), the SendGrid API (through the
real client and the stand-in) and the confirmation email; look-alike local parts are refused unless a list allows
international addresses."""

from __future__ import annotations

import email
from email import policy

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from mailer.batch import Content, Recipient
from mailer.db import new_session, session_scope
from mailer.message import build_message, encode_message
from mailer.placeholders import Key
from subscribers import importer, mailing_lists, service
from subscribers.models import ConsentSource, Subscriber
from tests.mailer.test_smtp_session import CONTENT, people, transport
from tests.mailer.test_transports import sendgrid, standin  # noqa: F401 (standin is a fixture)
from tests.newsletter.test_public import client, subscribe  # noqa: F401 (client is a fixture)
from tests.support.mailbox import outbox_messages
from tests.support.sendgrid_standin import SendGridStandIn
from tests.support.smtp_sink import SMTPSink

IDN = "anna@bücher.example"
WIRE = "anna@xn--bcher-kva.example"
LOOKALIKE = "p\u0430ypal@example.com"  # a Cyrillic "a" among Latin letters


def _to(data: bytes) -> tuple[str, str]:
    raw = next(line for line in data.split(b"\r\n") if line.startswith(b"To:")).decode("ascii")
    parsed = email.message_from_bytes(data, policy=policy.default)
    return raw, parsed["To"].addresses[0].addr_spec


@pytest.mark.parametrize("extra_headers", [{}, {"X-Campaign": "7"}], ids=["fast path", "email package"])
def test_the_to_header_carries_the_idna_domain(extra_headers: dict[str, str]) -> None:
    recipient = Recipient(email=IDN, values={Key.NAME: "Anna"}, headers=extra_headers,
                          unsubscribe_url="https://news.example.com/unsubscribe/t")
    data, _ = encode_message(CONTENT, recipient, message_id_domain="news.example.com")
    raw, parsed = _to(data)
    assert raw == f"To: {WIRE}" and parsed == WIRE and b"=?utf-8?" not in data.split(b"\r\n\r\n")[0]


def test_idn_sender_and_reply_to_are_converted_too() -> None:
    content = Content(subject="S", html="<p>x</p>", text="x", from_email="news@bücher.example", from_name="Bücher",
                      reply_to="antwort@bücher.example")
    message = build_message(content, Recipient(email=IDN, values={}), message_id_domain="news.example.com")
    assert message["From"].addresses[0].addr_spec == "news@xn--bcher-kva.example"
    assert message["Reply-To"].addresses[0].addr_spec == "antwort@xn--bcher-kva.example"


def test_a_non_ascii_local_part_is_written_as_utf8_not_an_encoded_word() -> None:
    message = build_message(CONTENT, Recipient(email="zoë@bücher.example", values={}),
                            message_id_domain="news.example.com")
    data = message.as_bytes()
    assert "To: zoë@xn--bcher-kva.example".encode() in data


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one-reply-at-a-time"])
def test_smtp_delivers_an_idn_address_to_a_server_without_smtputf8(pipelining: bool) -> None:
    server = SMTPSink(pipelining=pipelining, smtputf8=False).start()
    try:
        batch = people(2)
        batch.append(Recipient(email=IDN, delivery_id=9, values={Key.NAME: "Anna"}))
        client = transport(server)
        results = client.send(CONTENT, batch)
        client.close()
        assert all(r.ok for r in results), [r.error for r in results]
        assert server.counts()[WIRE] == 1
    finally:
        server.stop()


def test_sendgrid_gets_the_idna_address(standin: SendGridStandIn) -> None:  # noqa: F811
    results = sendgrid(standin).send(CONTENT, [Recipient(email=IDN, delivery_id=1, values={Key.NAME: "Anna"})])
    assert results[0].ok and [a.email for a in standin.accepted] == [WIRE]


def test_the_confirmation_email_to_an_idn_address(client: TestClient) -> None:  # noqa: F811
    assert subscribe(client, IDN, "Anna").status_code == 200
    [message] = outbox_messages()
    assert message["To"].addresses[0].addr_spec == WIRE and "=?utf-8?" not in str(message["To"])


def test_a_lookalike_address_is_refused_unless_the_list_allows_international(client: TestClient) -> None:  # noqa: F811
    refused = subscribe(client, LOOKALIKE)
    assert refused.status_code == 400 and "different alphabets" in refused.text
    with session_scope() as session:
        assert session.scalar(select(Subscriber).where(Subscriber.email == LOOKALIKE)) is None
        assert service.subscribe(session, mailing_lists.get_list(session, "weekly"), "иван@example.com",
                                 source=ConsentSource.FORM).subscription is not None  # one alphabet: fine
        world = mailing_lists.create_list(session, "world", "World", allow_international=True)
        assert service.subscribe(session, world, LOOKALIKE, source=ConsentSource.FORM).subscription is not None


def test_the_import_reports_lookalikes_by_line(client: TestClient, tmp_path) -> None:  # noqa: F811
    path = tmp_path / "people.csv"
    path.write_text(f"email,name\nok@example.com,Ok\n{LOOKALIKE},Fake\n", encoding="utf-8")
    result = importer.import_csv(new_session, path, "weekly")
    assert (result.imported, result.errors) == (1, 1)
    [row] = importer.read_report(result.report_path)
    assert row["line"] == "3" and "different alphabets" in row["reason"]
