"""Segment counts over a big list in PostgreSQL: what the admin's live count and `segments count` cost.

1,000,000 confirmed subscribers by default, each with custom fields in JSON (city, plan, age); the median of 5 counts
for an expression on an indexed column, on a JSON field, and a mixed one.

Run: .venv/bin/python -m bench.segments [--subscribers 1000000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import psycopg

from bench.database import create_database
from bench.report import write_section
from mailer.db import dispose_engines, session_scope
from mailer.settings import reset_settings
from newsletter.migrate import upgrade
from subscribers import audience, mailing_lists

EXPRESSIONS = [
    ("indexed column", 'email >= "r5" and email < "r6"', "<= 1 s"),
    ("JSON field", 'fields.city = "Berlin"', "<= 3 s"),
    ("JSON number and date", 'fields.age >= 30 and subscribed_at >= 2020-01-01', "<= 3 s"),
    ("mixed, with or/not", '(fields.plan in ["pro", "team"] or email_domain = "example7.com") and not '
                           'fields.city is empty', "<= 3 s"),
]


def populate(size: int) -> tuple[str, int]:
    _name, url = create_database()
    os.environ["NEWSLETTER_DATABASE_URL"] = url
    reset_settings()
    dispose_engines()
    upgrade(url)
    with session_scope() as session:
        list_id = mailing_lists.create_list(session, "bench", "Bench", double_opt_in=False).id
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO subscribers (email, name, attributes, created_at) "
            "SELECT 'r' || g || '@example' || (g %% 97) || '.com', 'Reader ' || g, "
            "json_build_object('city', (ARRAY['Berlin','Hamburg','Paris','Lyon',''])[1 + g %% 5], "
            "'plan', (ARRAY['free','pro','team'])[1 + g %% 3], 'age', (18 + g %% 60)::text), now() "
            "FROM generate_series(1, %s) g", (size,))
        conn.execute("INSERT INTO subscriptions (subscriber_id, list_id, status, source, created_at, confirmed_at) "
                     "SELECT id, %s, 'confirmed', 'bench', now() - (id %% 3000) * interval '1 day', now() "
                     "FROM subscribers", (list_id,))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE subscribers, subscriptions")
    return url, list_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    args = parser.parse_args()
    started = time.perf_counter()
    _url, list_id = populate(args.subscribers)
    print(f"{args.subscribers:,} subscribers in {time.perf_counter() - started:.0f} s")
    rows = []
    for label, expression, goal in EXPRESSIONS:
        times, matching = [], 0
        for _ in range(5):
            began = time.perf_counter()
            with session_scope() as session:
                matching = audience.count(session, list_id, expression)
            times.append(time.perf_counter() - began)
        median = statistics.median(times)
        print(f"{label}: {matching:,} match, median {median * 1000:.0f} ms")
        rows.append(f"| {label} | `{expression}` | {matching:,} | {median * 1000:,.0f} ms | {goal} |")
    write_section("segments", "\n".join([
        "## Segment counts (`python -m bench.segments`)", "",
        f"{args.subscribers:,} confirmed subscribers with custom fields (JSON) in PostgreSQL 15; median of 5 counts "
        f"through `subscribers.audience.count`, the function behind the admin's live count and `segments count` "
        f"(load average {os.getloadavg()[0]:.1f} when it ended).", "",
        "| kind | expression | matching | median | goal |", "|---|---|---|---|---|", *rows]))


if __name__ == "__main__":
    main()
