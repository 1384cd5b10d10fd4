"""The mail transactions of one SMTP connection, pipelined (RFC 2920) when the server offers PIPELINING.

smtplib's sendmail waits for the reply to MAIL, RCPT, DATA and the end of data in turn: four round trips a
message, and a regular expression over the whole message for dot-stuffing. Pipelined, the end of one message and
the envelope of the next leave in one write and their replies are read together, so a message costs one round
trip; dot-stuffing is a bytes replace. A server without PIPELINING gets the same commands one reply at a time.

Outcomes are per message: the first failing reply among MAIL, RCPT, DATA and the end of data decides it (a 4xx is
"try later", a 5xx is final). A connection that breaks raises ConnectionLost with the messages whose outcome is
known; the caller decides what to do with the rest.
"""

from __future__ import annotations

import smtplib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

OK, DATA_GO_AHEAD = 250, 354


@dataclass(frozen=True)
class Envelope:
    mail_from: str
    rcpt_to: str


@dataclass(frozen=True)
class Outcome:
    """The reply that decided a message: 250 for accepted, else the refusal."""

    code: int
    reply: str
    stage: str = "data"  # mail | rcpt | data: only a refusal at RCPT is a verdict on the recipient's address

    @property
    def accepted(self) -> bool:
        return self.code == OK


class ConnectionLost(Exception):
    """The connection broke after `outcomes` (one per message, in order) were known."""

    def __init__(self, outcomes: list[Outcome], cause: BaseException) -> None:
        super().__init__(f"SMTP connection lost: {cause}")
        self.outcomes = outcomes


def dot_stuff(data: bytes) -> bytes:
    """RFC 5321 4.5.2 transparency for a message whose lines all end in CRLF, followed by the end-of-data line."""
    if data.startswith(b"."):
        data = b"." + data
    if b"\n." in data:
        data = data.replace(b"\n.", b"\n..")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


NO_SMTPUTF8 = Outcome(553, "the address is not ASCII and the server does not offer SMTPUTF8")


def _command(envelope: Envelope, smtputf8: bool) -> bytes | None:
    """MAIL, RCPT and DATA for one envelope; None when it has a non-ASCII address the server cannot take."""
    utf8 = not (envelope.mail_from.isascii() and envelope.rcpt_to.isascii())
    if utf8 and not smtputf8:
        return None
    options = " SMTPUTF8" if utf8 else ""
    text = f"MAIL FROM:<{envelope.mail_from}>{options}\r\nRCPT TO:<{envelope.rcpt_to}>\r\nDATA\r\n"
    return text.encode("utf-8" if utf8 else "ascii")


def send_messages(connection: smtplib.SMTP, envelopes: Sequence[Envelope],
                  message: Callable[[int], bytes]) -> list[Outcome]:
    """Send envelopes[i] with the bytes message(i) over an open, greeted connection; one Outcome per envelope.

    Raises ConnectionLost (with the outcomes known so far, in order) if the connection breaks.
    """
    if connection.has_extn("pipelining"):
        return _Pipeline(connection, message).run(envelopes)
    return _one_reply_at_a_time(connection, envelopes, message)


class _Pipeline:
    """Each write carries the previous message's data, an RSET if its transaction failed, and the next envelope;
    the replies to all of it are read after the next message is built, while the server works."""

    def __init__(self, connection: smtplib.SMTP, message: Callable[[int], bytes]) -> None:
        self.connection = connection
        self.message = message
        self.smtputf8 = connection.has_extn("smtputf8")
        self.outcomes: list[Outcome] = []
        self.unsent = b""  # written with the next envelope
        self.awaiting_end = False  # the last message's end-of-data reply is still to be read
        self.reset = False  # an RSET is in `unsent` or on the wire; its reply comes next

    def run(self, envelopes: Sequence[Envelope]) -> list[Outcome]:
        try:
            for index, envelope in enumerate(envelopes):
                self._transaction(index, envelope)
            self._flush()  # and the connection is clean for another batch
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            raise ConnectionLost(self.outcomes, exc) from exc
        return self.outcomes

    def _flush(self) -> None:
        """Write what is held back and read every reply still owed."""
        if self.unsent:
            self.connection.send(self.unsent)
            self.unsent = b""
        self._read_end()
        if self.reset:
            self.connection.getreply()
            self.reset = False

    def _transaction(self, index: int, envelope: Envelope) -> None:
        commands = _command(envelope, self.smtputf8)
        if commands is None:
            self._flush()
            self.outcomes.append(NO_SMTPUTF8)
            return
        self.connection.send(self.unsent + commands)
        self.unsent = b""
        body = self.message(index)
        self._read_end()
        if self.reset:
            self.connection.getreply()
            self.reset = False
        replies = [self.connection.getreply() for _ in range(3)]
        refused = next(((code, text, stage) for (code, text), stage in zip(replies[:2], ("mail", "rcpt"),
                                                                             strict=True) if code != OK), None)
        if replies[2][0] != DATA_GO_AHEAD:
            self.outcomes.append(_outcome(*(refused or replies[2])))
            self.unsent, self.reset = b"RSET\r\n", True
        elif refused is not None:  # DATA accepted for a refused envelope: a broken server; end it empty
            self.connection.send(b".\r\n")
            self.connection.getreply()
            self.outcomes.append(_outcome(*refused))
            self.unsent, self.reset = b"RSET\r\n", True
        else:
            self.unsent, self.awaiting_end = dot_stuff(body), True

    def _read_end(self) -> None:
        if self.awaiting_end:
            self.awaiting_end = False
            self.outcomes.append(_outcome(*self.connection.getreply()))


def _one_reply_at_a_time(connection: smtplib.SMTP, envelopes: Sequence[Envelope],
                         message: Callable[[int], bytes]) -> list[Outcome]:
    """The same transactions for a server without PIPELINING: each command waits for its reply."""
    smtputf8 = connection.has_extn("smtputf8")
    outcomes: list[Outcome] = []
    try:
        for index, envelope in enumerate(envelopes):
            commands = _command(envelope, smtputf8)
            if commands is None:
                outcomes.append(NO_SMTPUTF8)
                continue
            reply, stage = (OK, b""), "data"
            for line, step in zip(commands.splitlines(keepends=True), ("mail", "rcpt", "data"), strict=True):
                connection.send(line)
                reply = connection.getreply()
                if reply[0] not in (OK, DATA_GO_AHEAD):
                    stage = step
                    break
            if reply[0] == DATA_GO_AHEAD:
                connection.send(dot_stuff(message(index)))
                reply = connection.getreply()
            outcomes.append(_outcome(*reply, stage))
            if reply[0] != OK:
                connection.send(b"RSET\r\n")
                connection.getreply()
    except (smtplib.SMTPServerDisconnected, OSError) as exc:
        raise ConnectionLost(outcomes, exc) from exc
    return outcomes


def _outcome(code: int, reply: bytes | str, stage: str = "data") -> Outcome:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return Outcome(code, text, stage)
