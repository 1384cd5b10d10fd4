"""Render time per issue and personalisations per second, on the example issue, on one core.

Run: .venv/bin/python -m bench.render
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from bench.report import write_section
from mailer.batch import Content, Recipient
from mailer.dkim_signing import DkimKey, DkimSigner
from mailer.issue import load_issue
from mailer.message import encode_message
from mailer.placeholders import Key
from mailer.render import render_issue
from mailer.transports.sendgrid import SendGridTransport

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "issues" / "2023-09-22-digital-digest.md"


def dkim_costs(content: Content, recipients: list[Recipient]) -> list[tuple[str, str, str]]:
    """Per-message CPU time (process time: the machine is shared, wall time would count other people's work) of
    the SMTP path unsigned, signed with RSA-2048, and dual-signed; best of 3 rounds of 1,000 messages."""
    rsa_key = DkimKey("bench", "news.example.com", rsa.generate_private_key(public_exponent=65537, key_size=2048))
    ed_key = DkimKey("bench-ed", "news.example.com", ed25519.Ed25519PrivateKey.generate())
    costs = {}
    for label, signer in (("unsigned", None), ("RSA-2048", DkimSigner([rsa_key])),
                          ("RSA-2048 + Ed25519", DkimSigner([rsa_key, ed_key]))):
        best = float("inf")
        for _ in range(3):
            start = time.process_time()
            for recipient in recipients:
                encode_message(content, recipient, message_id_domain="news.example.com", dkim=signer)
            best = min(best, (time.process_time() - start) / len(recipients) * 1e6)
        costs[label] = best
    data = b"x" * 1024
    start = time.process_time()
    for _ in range(1000):
        rsa_key.sign(data)
    rsa_alone = (time.process_time() - start) * 1000
    # What the SMTP transport did before issue 17: dkimpy, whose RSA is pure Python, on the same messages.
    pem = rsa_key.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption())
    messages = [encode_message(content, r, message_id_domain="news.example.com")[0] for r in recipients[:30]]
    start = time.process_time()
    for message in messages:
        dkim.sign(message, b"bench", b"news.example.com", pem, include_headers=[
            b"from", b"to", b"subject", b"date", b"message-id", b"list-id", b"list-unsubscribe",
            b"list-unsubscribe-post", b"mime-version", b"content-type"])
    dkimpy = costs["unsigned"] + (time.process_time() - start) / len(messages) * 1e6
    rows = [(f"CPU per SMTP message, {label}", f"{cost:.0f} µs" + (
        f" (+{cost - costs['unsigned']:.0f} µs)" if label != "unsigned" else ""), "") for label, cost in costs.items()]
    return [*rows, ("of which one RSA-2048 signature (OpenSSL)", f"{rsa_alone:.0f} µs", ""),
            ("CPU per SMTP message, RSA-2048 through dkimpy (before issue 17)", f"{dkimpy:.0f} µs", "")]


def main() -> None:
    load = os.getloadavg()[0]  # the machine is shared: a figure means little without it
    issue = load_issue(EXAMPLE)
    render_issue(issue)  # warm-up: template compilation, imports
    timings = []
    for _ in range(30):
        start = time.perf_counter()
        rendered = render_issue(issue)
        timings.append((time.perf_counter() - start) * 1000)
    content = Content(subject=rendered.subject, html=rendered.html, text=rendered.text, from_email="a@example.com",
                      from_name="Digital Digest", list_id="Digital Digest <weekly.news.example.com>", send_id=1)
    recipients = [Recipient(email=f"r{i}@example.com", delivery_id=i,
                            unsubscribe_url=f"https://news.example.com/unsubscribe/token-{i}", values={
        Key.NAME: f"Reader {i}", Key.EMAIL: f"r{i}@example.com",
        Key.UNSUBSCRIBE_URL: f"https://news.example.com/unsubscribe/token-{i}",
        Key.PREFERENCES_URL: f"https://news.example.com/preferences/token-{i}",
        Key.WEB_URL: "https://news.example.com/archive/issue"}) for i in range(1000)]
    sendgrid = SendGridTransport("SG.bench", host="http://127.0.0.1:9", timeout_s=1)
    rounds = 20
    start = time.perf_counter()
    for _ in range(rounds):
        json.dumps(sendgrid.payload(content, recipients))
    sendgrid_per_second = rounds * len(recipients) / (time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(rounds):
        for recipient in recipients:
            encode_message(content, recipient, message_id_domain="news.example.com")
    mime_per_second = rounds * len(recipients) / (time.perf_counter() - start)
    signed = dkim_costs(content, recipients)
    median, best = statistics.median(timings), min(timings)
    rows = [
        ("render one issue (HTML + text + web variant), median", f"{median:.1f} ms", "<= 15 ms"),
        ("render one issue, best of 30", f"{best:.1f} ms", ""),
        ("recipients/s, SendGrid path (request body: folded tables, headers, JSON)", f"{sendgrid_per_second:,.0f}",
         ">= 100,000"),
        ("messages/s, SMTP/outbox path (one recipient's whole MIME message)", f"{mime_per_second:,.0f}",
         ">= 20,000"),
        *signed,
        ("HTML size", f"{rendered.html_bytes / 1024:.1f} KB", "< 102 KB"),
    ]
    table = "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    body = ("## Render (`python -m bench.render`)\n\nThe example issue (8 stories). A render runs Jinja2, MJML and "
            "premailer once (the web variant is cut from the same HTML) plus the text template. Then what a send "
            "does per recipient with the result, on each path. One core; the machine's 1-minute load average "
            f"was {load:.1f} at the start (2 cores, shared).\n\n"
            "| figure | value | goal |\n|---|---|---|\n"
            + table)
    print(body)
    write_section("render", body)


if __name__ == "__main__":
    main()
