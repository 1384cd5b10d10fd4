"""SMTP transactions against a real server (aiosmtpd on loopback), pipelined (RFC 2920) and one reply at a time."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import replace

import pytest

from mailer.batch import Content, Recipient, Result, TransportError
from mailer.placeholders import Key
from mailer.transports.smtp import MIN_SHARE, SMTPTransport, _gather
from mailer.transports.smtp_session import dot_stuff
from tests.support.smtp_sink import SMTPSink

CONTENT = Content(subject="Weekly", html="<p>Hi __NLH_NAME__</p>\n.<p>a line that starts with a dot</p>",
                  text="Hi __NLT_NAME__\n.a line that starts with a dot\n..and two\n.", from_email="d@news.example.com",
                  from_name="Digest", list_id="Weekly <weekly.news.example.com>", send_id=3)


def people(n: int, domain: str = "example.com") -> list[Recipient]:
    return [Recipient(email=f"p{i}@{domain}", delivery_id=i, values={Key.NAME: f"P{i}"},
                      unsubscribe_url=f"https://news.example.com/unsubscribe/t{i}") for i in range(n)]


@pytest.fixture(params=[True, False], ids=["pipelined", "one-reply-at-a-time"])
def sink(request: pytest.FixtureRequest) -> Iterator[SMTPSink]:
    server = SMTPSink(pipelining=request.param).start()
    yield server
    server.stop()


def transport(sink: SMTPSink, connections: int = 1) -> SMTPTransport:
    return SMTPTransport("127.0.0.1", sink.port, message_id_domain="news.example.com",
                        default_return_path="bounces@news.example.com", timeout_s=5, connections=connections)


def test_a_batch_shared_over_connections_arrives_once_and_in_order(sink: SMTPSink) -> None:
    """Four connections, each a contiguous share: every recipient once, results in the batch's order, refusals
    per recipient wherever they fall, and the connections kept for the next batch."""
    batch = people(4 * MIN_SHARE + 3)
    for refused in (0, MIN_SHARE, 2 * MIN_SHARE + 1, len(batch) - 1):  # at the edges of the shares
        sink.reject(f"p{refused}@example.com")
    client = transport(sink, connections=4)
    results = client.send(CONTENT, batch)
    assert sink.handler.greetings == 4
    assert [r.recipient.email for r in results] == [r.email for r in batch]
    assert [i for i, r in enumerate(results) if not r.ok] == [0, MIN_SHARE, 2 * MIN_SHARE + 1, len(batch) - 1]
    assert len({r.message_id for r in results if r.ok}) == len(batch) - 4
    client.send(CONTENT, people(MIN_SHARE - 1, "example.org"))  # too small to share: one connection, reused
    client.close()
    assert sink.handler.greetings == 4
    counts = sink.counts()
    assert sum(counts.values()) == len(batch) - 4 + MIN_SHARE - 1 and set(counts.values()) == {1}


def test_a_dropped_line_in_one_share_is_redialled_and_nobody_is_lost(sink: SMTPSink) -> None:
    sink.handler.hang_up_at_data = {7}
    client = transport(sink, connections=3)
    results = client.send(CONTENT, people(3 * MIN_SHARE))
    client.close()
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert sink.counts() == {f"p{i}@example.com": 1 for i in range(3 * MIN_SHARE)}
    assert sink.handler.greetings == 4  # three connections and one redial


def _done(value: list[Result] | TransportError) -> Future[list[Result]]:
    future: Future[list[Result]] = Future()
    if isinstance(value, TransportError):
        future.set_exception(value)
    else:
        future.set_result(value)
    return future


def test_a_share_that_could_not_connect_comes_back_for_later_once_others_went_out() -> None:
    """Raising after another share went out would hand its sent rows back as unsent, and they would go again."""
    first, second = people(2), people(2, "example.org")
    sent = [Result(r, ok=True, message_id="m") for r in first]
    results = _gather([_done(sent), _done(TransportError("connection refused", retryable=True))], [first, second])
    assert [r.ok for r in results] == [True, True, False, False]
    assert all(r.retryable and "connection refused" in (r.error or "") for r in results[2:])
    with pytest.raises(TransportError) as info:  # nothing went out: the batch is retried whole, or paused
        _gather([_done(TransportError("busy", retryable=True)), _done(TransportError("login refused", fatal=True))],
                [first, second])
    assert info.value.fatal


def test_the_client_pipelines_only_when_the_server_offers_it(sink: SMTPSink) -> None:
    client = transport(sink)
    client.send(CONTENT, people(1))
    connection = client._lanes[0]._connection
    assert connection is not None
    assert bool(connection.has_extn("pipelining")) is sink.handler.pipelining
    client.close()


def test_refusals_anywhere_in_a_batch_are_per_recipient_and_the_rest_arrive_once(sink: SMTPSink) -> None:
    batch = people(60)
    sink.reject("p0@example.com")  # first
    sink.reject("p17@example.com", "452 4.2.2 Mailbox full, try later")
    sink.reject("p18@example.com")  # two refusals in a row
    sink.reject("p59@example.com")  # last: the connection must still be clean afterwards
    client = transport(sink)
    results = client.send(CONTENT, batch)
    outcomes = {r.recipient.email: (r.ok, r.retryable) for r in results}
    assert [r.recipient.email for r in results] == [r.email for r in batch]
    assert outcomes["p0@example.com"] == outcomes["p18@example.com"] == outcomes["p59@example.com"] == (False, False)
    assert outcomes["p17@example.com"] == (False, True)
    assert sum(ok for ok, _ in outcomes.values()) == 56
    assert results[17].error is not None and results[17].error.startswith("452")
    # the same connection carries the next batch
    second = client.send(CONTENT, people(5, "example.org"))
    client.close()
    assert all(r.ok for r in second)
    counts = sink.counts()
    assert sum(counts.values()) == 61 and set(counts.values()) == {1}
    assert len({r.message_id for r in results if r.ok}) == 56


def test_lines_starting_with_a_dot_survive_transparency(sink: SMTPSink) -> None:
    client = transport(sink)
    client.send(CONTENT, people(3))
    client.close()
    for received in sink.received:
        message = received.message
        text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
        html = message.get_body(("html",)).get_content().replace("\r\n", "\n")
        assert text.endswith("\n.a line that starts with a dot\n..and two\n.")
        assert html.endswith("\n.<p>a line that starts with a dot</p>")


def test_a_dropped_line_is_redialled_once_and_nobody_is_lost(sink: SMTPSink) -> None:
    sink.handler.hang_up_at_data = {4}
    client = transport(sink)
    results = client.send(CONTENT, people(10))
    client.close()
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert sink.counts() == {f"p{i}@example.com": 1 for i in range(10)}


def test_a_line_that_keeps_dropping_hands_the_rest_back_for_later(sink: SMTPSink) -> None:
    sink.handler.hang_up_at_data = {3, 4}
    client = transport(sink)
    results = client.send(CONTENT, people(8))
    client.close()
    assert [r.ok for r in results[:2]] == [True, True]
    assert all(not r.ok and r.retryable for r in results[2:])
    assert sink.counts() == {"p0@example.com": 1, "p1@example.com": 1}


def test_a_non_ascii_address_without_smtputf8_fails_alone(sink: SMTPSink) -> None:
    batch = people(3)
    batch[1] = Recipient(email="zoë@example.com", delivery_id=1, values={Key.NAME: "Zoë"})
    client = transport(sink)
    results = client.send(CONTENT, batch)
    client.close()
    assert [(r.ok, r.retryable) for r in results] == [(True, False), (False, False), (True, False)]
    assert results[1].error is not None and "SMTPUTF8" in results[1].error
    assert sorted(sink.counts()) == ["p0@example.com", "p2@example.com"]


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one-reply-at-a-time"])
def test_a_non_ascii_address_goes_out_with_smtputf8_when_offered(pipelining: bool) -> None:
    server = SMTPSink(pipelining=pipelining, smtputf8=True).start()
    try:
        batch = people(3)
        batch[1] = Recipient(email="zoë@example.com", delivery_id=1, values={Key.NAME: "Zoë"})
        client = transport(server)
        results = client.send(CONTENT, batch)
        client.close()
        assert all(r.ok for r in results), [r.error for r in results]
        assert server.counts() == {"p0@example.com": 1, "zoë@example.com": 1, "p2@example.com": 1}
    finally:
        server.stop()


def test_dot_stuffing_is_rfc_5321_transparency() -> None:
    assert dot_stuff(b"a\r\n.b\r\n") == b"a\r\n..b\r\n.\r\n"
    assert dot_stuff(b".start\r\nend") == b"..start\r\nend\r\n.\r\n"
    assert dot_stuff(b"no dots here\r\n") == b"no dots here\r\n.\r\n"


def test_only_a_refusal_at_rcpt_is_a_verdict_on_the_address(sink: SMTPSink) -> None:
    """A 5xx to MAIL FROM is about the sender (us) and says nothing of the recipient: it must never suppress them.
    A 5xx to RCPT is the recipient's server refusing the address: the same evidence as a hard bounce."""
    batch = [replace(person, return_path=f"bounces+{person.delivery_id}@news.example.com") for person in people(4)]
    sink.handler.reject_senders["bounces+0@news.example.com"] = "553 5.7.1 Sender address rejected"
    sink.reject("p1@example.com")  # 550 5.1.1 unknown user
    sink.reject("p2@example.com", "452 4.2.2 Mailbox full, try later")
    client = transport(sink)
    results = client.send(CONTENT, batch)
    client.close()
    verdicts = [(r.ok, r.retryable, r.answered, r.refused_address) for r in results]
    assert verdicts == [(False, False, True, False), (False, False, True, True), (False, True, False, False),
                        (True, False, True, False)]
    assert sink.counts() == {"p3@example.com": 1}
