"""Render time per issue and personalisations per second, on the example issue, on one core.

Run: .venv/bin/python -m bench.render
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from bench.report import write_section
from mailer.batch import Content, Recipient
from mailer.issue import load_issue
from mailer.message import encode_message
from mailer.placeholders import Key
from mailer.render import render_issue
from mailer.transports.sendgrid import SendGridTransport

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "issues" / "2023-09-22-digital-digest.md"


def main() -> None:
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
    median, best = statistics.median(timings), min(timings)
    rows = [
        ("render one issue (HTML + text + web variant), median", f"{median:.1f} ms", "<= 15 ms"),
        ("render one issue, best of 30", f"{best:.1f} ms", ""),
        ("recipients/s, SendGrid path (request body: folded tables, headers, JSON)", f"{sendgrid_per_second:,.0f}",
         ">= 100,000"),
        ("messages/s, SMTP/outbox path (one recipient's whole MIME message)", f"{mime_per_second:,.0f}",
         ">= 20,000"),
        ("HTML size", f"{rendered.html_bytes / 1024:.1f} KB", "< 102 KB"),
    ]
    table = "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    body = ("## Render (`python -m bench.render`)\n\nThe example issue (8 stories). A render runs Jinja2, MJML and "
            "premailer once (the web variant is cut from the same HTML) plus the text template. Then what a send "
            "does per recipient with the result, on each path. One core.\n\n"
            "| figure | value | goal |\n|---|---|---|\n"
            + table)
    print(body)
    write_section("render", body)


if __name__ == "__main__":
    main()
