"""SMTP connections per worker against a relay that takes time to answer: the real SMTPTransport sends the example
issue to an SMTP server on loopback (aiosmtpd in a process of its own, PIPELINING offered) that answers each
message's end of data after --latency-ms, as a relay across a network or one that scans what it accepts does. One
connection waits out that latency once per message (the server's 354 must arrive before a body may be sent);
N connections overlap N.

Run: .venv/bin/python -m bench.smtp_connections [--messages 400] [--latency-ms 5 20] [--connections 1 2 4 8]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.report import write_section
from bench.send import ROOT, free_port
from mailer.batch import Content, Recipient
from mailer.issue import load_issue
from mailer.placeholders import Key
from mailer.render import render_issue
from mailer.transports.smtp import SMTPTransport
from tests.support.smtp_sink import read_log

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "issues" / "2023-09-22-digital-digest.md"


def messages(count: int) -> tuple[Content, list[Recipient]]:
    rendered = render_issue(load_issue(EXAMPLE))
    content = Content(subject=rendered.subject, html=rendered.html, text=rendered.text,
                      from_email="digest@news.example.com", from_name="Digest",
                      list_id="Digest <digest.news.example.com>", send_id=1)
    return content, [Recipient(email=f"r{i}@example.com", delivery_id=i,
                               unsubscribe_url=f"https://news.example.com/unsubscribe/t{i}",
                               values={Key.NAME: f"Reader {i}", Key.EMAIL: f"r{i}@example.com",
                                       Key.UNSUBSCRIBE_URL: f"https://news.example.com/unsubscribe/t{i}",
                                       Key.PREFERENCES_URL: f"https://news.example.com/preferences/t{i}",
                                       Key.WEB_URL: "https://news.example.com/archive/issue"})
                     for i in range(count)]


def measure(content: Content, recipients: list[Recipient], latency_ms: float, connections: int,
            workdir: Path) -> float:
    """Messages/s of one send() of every recipient. The server is a process of its own (tests/support/smtp_sink.py),
    so its parsing does not share this process's interpreter lock with the client being measured."""
    port, log = free_port(), workdir / f"sink-{latency_ms:g}-{connections}.log"
    sink = subprocess.Popen([sys.executable, "-m", "tests.support.smtp_sink", "--port", str(port), "--log", str(log),
                             "--pipelining", "--data-delay-ms", str(latency_ms)], cwd=ROOT, stdout=subprocess.PIPE)
    try:
        assert sink.stdout is not None
        sink.stdout.readline()  # "listening on PORT"
        transport = SMTPTransport("127.0.0.1", port, message_id_domain="news.example.com",
                                  default_return_path="bounces@news.example.com", connections=connections)
        started = time.perf_counter()
        results = transport.send(content, recipients)
        seconds = time.perf_counter() - started
        transport.close()
    finally:
        sink.terminate()
        sink.wait(timeout=10)
    received = read_log(log)
    if not all(r.ok for r in results) or len(received) != len(recipients) or set(received.values()) != {1}:
        raise SystemExit(f"not every message arrived once: {len(received)} of {len(recipients)}")
    return len(recipients) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--latency-ms", type=float, nargs="*", default=[5.0, 20.0])
    parser.add_argument("--connections", type=int, nargs="*", default=[1, 2, 4, 8])
    args = parser.parse_args()
    content, recipients = messages(args.messages)
    workdir = Path(tempfile.mkdtemp())
    rows = []
    for latency in args.latency_ms:
        rates = [measure(content, recipients, latency, n, workdir) for n in args.connections]
        rows.append(f"| {latency:g} ms | " + " | ".join(f"{rate:,.0f}" for rate in rates) + " |")
        print(rows[-1], flush=True)
    body = "\n".join([
        "## SMTP connections per worker (`python -m bench.smtp_connections`)", "",
        f"One worker's SMTPTransport sends {args.messages} messages of the example issue to an SMTP server on "
        "loopback that answers each end of data after the given latency; messages/s by connections per worker "
        f"(`NEWSLETTER_SMTP_CONNECTIONS`, default 4). Load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores when it ended.", "",
        "| relay latency | " + " | ".join(f"{n} connection{'s' if n > 1 else ''}" for n in args.connections) + " |",
        "|---|" + "---|" * len(args.connections), *rows])
    write_section("smtp-connections", body)


if __name__ == "__main__":
    main()
