"""What rendering for a list costs: the example issue rendered plain (English, the service's identity) and for a
German list with a brand, interleaved, best of 30 each (the best is the figure a loaded machine distorts least);
the i18n work alone (Babel date, gettext lookups); and a recipient's whole MIME message with Feedback-ID.

Run: .venv/bin/python -m bench.render_audience
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

from bench.report import write_section
from mailer.batch import Content, Recipient
from mailer.brand import Audience, Brand
from mailer.i18n import long_date, translations
from mailer.issue import load_issue
from mailer.message import encode_message
from mailer.placeholders import Key
from mailer.render import render_issue

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "issues" / "2023-09-22-digital-digest.md"
GERMAN = Audience(list_name="Das Wochenblatt", lang="de", brand=Brand(
    name="Wochenblatt", logo_url="https://cdn.example.com/logo.png", accent="#7c2d12",
    postal_address="Wochenblatt GmbH, Hafenstraße 1, 20457 Hamburg"))


def _best_ms(run: object, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        run()  # type: ignore[operator]
        best = min(best, time.perf_counter() - start)
    return best * 1000


def main() -> None:
    issue = load_issue(EXAMPLE)
    render_issue(issue), render_issue(issue, audience=GERMAN)  # warm-up
    plain = german = float("inf")
    for _ in range(30):
        plain = min(plain, _best_ms(lambda: render_issue(issue), 1))
        german = min(german, _best_ms(lambda: render_issue(issue, audience=GERMAN), 1))

    def i18n() -> None:
        long_date(dt.date(2023, 9, 22), "de")
        gettext = translations("de").gettext
        for message in ("View in your browser", "Hi %(name)s,", "Manage preferences", "Unsubscribe", "there"):
            gettext(message)
    i18n_us = _best_ms(lambda: [i18n() for _ in range(100)], 20) * 10
    rendered = render_issue(issue, audience=GERMAN)
    content = Content(subject=rendered.subject, html=rendered.html, text=rendered.text, from_email="a@example.com",
                      from_name="Wochenblatt", list_id="Das Wochenblatt <woche.news.example.com>", send_id=1,
                      feedback_id="send1:woche:example.com")
    recipients = [Recipient(email=f"r{i}@example.com", delivery_id=i,
                            unsubscribe_url=f"https://news.example.com/unsubscribe/token-{i}", values={
        Key.NAME: f"Reader {i}", Key.EMAIL: f"r{i}@example.com",
        Key.UNSUBSCRIBE_URL: f"https://news.example.com/unsubscribe/token-{i}",
        Key.PREFERENCES_URL: f"https://news.example.com/preferences/token-{i}",
        Key.WEB_URL: "https://news.example.com/archive/issue"}) for i in range(500)]
    per_message = _best_ms(lambda: [encode_message(content, r, message_id_domain="news.example.com")
                                    for r in recipients], 10) / len(recipients) * 1000
    rows = [("render, plain (English, service identity), best of 30", f"{plain:.1f} ms"),
            ("render for a German list with a brand, best of 30", f"{german:.1f} ms"),
            ("of which i18n (Babel date + 5 gettext lookups)", f"{i18n_us:.0f} µs"),
            ("one recipient's MIME message (SMTP/outbox path, Feedback-ID), best", f"{per_message:.0f} µs")]
    load = os.getloadavg()[0]
    body = ("## Rendering for a list (`python -m bench.render_audience`)\n\nA send renders its issue once, for its "
            "list, when it is created; nothing of this is per recipient. Best-of figures, interleaved; load average "
            f"{load:.1f} on {os.cpu_count()} cores when measured (compare the rows with each other).\n\n"
            "| figure | value |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows))
    print(body)
    write_section("render-audience", body)


if __name__ == "__main__":
    main()
