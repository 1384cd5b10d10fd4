"""A real SMTP server on loopback (aiosmtpd) that records every accepted recipient and can refuse some.

In-process: `SMTPSink().start()`. As a process for multi-process tests:
`python -m tests.support.smtp_sink --port N --log FILE` appends one line per accepted recipient to FILE.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Received:
    mail_from: str
    rcpt: str
    data: bytes

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=policy.default)  # type: ignore[return-value]


@dataclass
class SinkHandler:
    reject: dict[str, str] = field(default_factory=dict)  # address -> SMTP reply, e.g. "550 5.1.1 no such user"
    received: list[Received] = field(default_factory=list)
    log_path: Path | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    pipelining: bool = False  # advertise RFC 2920 PIPELINING (aiosmtpd reads pipelined commands in order)
    hang_up_at_data: set[int] = field(default_factory=set)  # the Nth messages (1-based) at which to drop the line
    data_count: int = 0
    reject_senders: dict[str, str] = field(default_factory=dict)  # MAIL FROM address -> SMTP reply
    greetings: int = 0  # EHLOs seen: one per connection a client opened
    data_delay_s: float = 0.0  # answer each end of data this late (a distant or slow relay; other sessions go on)

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        with self.lock:
            self.greetings += 1
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          mail_options: list[str]) -> str:
        reply = self.reject_senders.get(address.lower())
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        reply = self.reject.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_delay_s:
            await asyncio.sleep(self.data_delay_s)
        data = envelope.original_content or b""
        with self.lock:
            self.data_count += 1
            if self.data_count in self.hang_up_at_data:  # the message is lost with the line, never stored
                assert server.transport is not None
                server.transport.abort()
                return "421 gone"
            for rcpt in envelope.rcpt_tos:
                self.received.append(Received(str(envelope.mail_from), rcpt.lower(), data))
                if self.log_path is not None:
                    with self.log_path.open("a") as log:
                        log.write(rcpt.lower() + "\n")
        return "250 Message accepted for delivery"


class SMTPSink:
    def __init__(self, port: int = 0, log_path: Path | None = None, *, pipelining: bool = False,
                 smtputf8: bool = False) -> None:
        self.handler = SinkHandler(log_path=log_path, pipelining=pipelining)
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=port or _free_port(),
                                     server_kwargs={"enable_SMTPUTF8": smtputf8})

    @property
    def port(self) -> int:
        return int(self.controller.port)

    def start(self) -> SMTPSink:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def reject(self, address: str, reply: str = "550 5.1.1 <{a}>: Recipient address rejected: User unknown") -> None:
        self.handler.reject[address.lower()] = reply.format(a=address)

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    def counts(self) -> Counter[str]:
        with self.handler.lock:
            return Counter(r.rcpt for r in self.handler.received)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_log(path: Path) -> Counter[str]:
    if not path.exists():
        return Counter()
    return Counter(line.strip() for line in path.read_text().splitlines() if line.strip())


def main(argv: Any = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--pipelining", action="store_true")
    parser.add_argument("--data-delay-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    sink = SMTPSink(args.port, args.log, pipelining=args.pipelining)
    sink.handler.data_delay_s = args.data_delay_ms / 1000
    sink.start()
    print(f"listening on {sink.port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        sink.stop()


if __name__ == "__main__":
    main()
