"""Render time per issue and personalisations per second, on the example issue, on one core.

Run: .venv/bin/python -m bench.render
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from bench.report import write_section
from mailer.issue import load_issue
from mailer.message import personalize
from mailer.placeholders import Key, substitutions
from mailer.render import render_issue
from mailer.transports.base import Content, Recipient

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "issues" / "2023-09-22-digital-digest.md"


def main() -> None:
    issue = load_issue(EXAMPLE)
    render_issue(issue)  # warm-up: template compilation, imports
    timings = []
    for _ in range(30):
        start = time.perf_counter()
        rendered = render_issue(issue)
        timings.append((time.perf_counter() - start) * 1000)
    content = Content(subject=rendered.subject, html=rendered.html, text=rendered.text, from_email="a@example.com")
    recipients = [Recipient(email=f"r{i}@example.com", values={
        Key.NAME: f"Reader {i}", Key.EMAIL: f"r{i}@example.com",
        Key.UNSUBSCRIBE_URL: f"https://news.example.com/unsubscribe/token-{i}",
        Key.PREFERENCES_URL: f"https://news.example.com/preferences/token-{i}",
        Key.WEB_URL: "https://news.example.com/archive/issue"}) for i in range(1000)]
    rounds = 100
    start = time.perf_counter()
    for _ in range(rounds):
        for recipient in recipients:
            substitutions(recipient.values)
    tables_per_second = rounds * len(recipients) / (time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(rounds):
        for recipient in recipients:
            personalize(content, recipient)
    per_second = rounds * len(recipients) / (time.perf_counter() - start)
    median, best = statistics.median(timings), min(timings)
    rows = [
        ("render one issue (HTML + text + web variant), median", f"{median:.1f} ms", "<= 15 ms"),
        ("render one issue, best of 30", f"{best:.1f} ms", ""),
        ("personalisations/s, SendGrid path (the escaped substitution table)", f"{tables_per_second:,.0f}",
         ">= 200,000"),
        ("personalisations/s, SMTP/outbox path (whole HTML + text bodies filled)", f"{per_second:,.0f}", ""),
        ("HTML size", f"{rendered.html_bytes / 1024:.1f} KB", "< 102 KB"),
    ]
    table = "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    body = ("## Render (`python -m bench.render`)\n\nThe example issue (8 stories). A render runs Jinja2, MJML and "
            "premailer once (the web variant is cut from the same HTML) plus the text template. One core.\n\n"
            "| figure | value | goal |\n|---|---|---|\n"
            + table)
    print(body)
    write_section("render", body)


if __name__ == "__main__":
    main()
