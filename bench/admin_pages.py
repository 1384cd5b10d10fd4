"""Admin pages over 1M subscribers in PostgreSQL: how long a subscribers page takes, first and deep pages,
filtered and searched, through the real app (sign-in, templates, keyset queries).

Run: .venv/bin/python -m bench.admin_pages [--subscribers 1000000]
Works on a scratch database that it drops afterwards.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time

import psycopg
from fastapi.testclient import TestClient

from bench.database import ADMIN_URL, create_database
from bench.report import write_section
from mailer.db import dispose_engines, session_scope
from newsletter.auth import create_user
from newsletter.migrate import upgrade
from newsletter.models import Role
from newsletter.web.app import create_app
from subscribers import mailing_lists

PASSWORD = "bench password 123"


def fill(url: str, count: int) -> None:
    """Rows go in with INSERT .. SELECT generate_series: the benchmark is about reading, not writing."""

    with session_scope() as session:
        create_user(session, "bench@example.com", PASSWORD, Role.ADMIN)
        weekly = mailing_lists.create_list(session, "weekly", "Weekly", double_opt_in=False)
        other = mailing_lists.create_list(session, "other", "Other", double_opt_in=False)
        ids = weekly.id, other.id
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute("INSERT INTO subscribers (email, name, attributes, created_at) SELECT 'reader' || g || "
                     "'@example' || (g %% 97) || '.com', 'Reader ' || g, '{}', now() FROM generate_series(1, %s) g",
                     (count,))
        conn.execute("INSERT INTO subscriptions (subscriber_id, list_id, status, source, created_at) "
                     "SELECT id, CASE WHEN id %% 4 = 0 THEN %s ELSE %s END, CASE WHEN id %% 50 = 0 THEN "
                     "'unsubscribed' WHEN id %% 20 = 1 THEN 'pending' ELSE 'confirmed' END, 'bench', now() "
                     "FROM subscribers", (ids[1], ids[0]))
        conn.execute("ANALYZE")


def timed(client: object, path: str, runs: int = 5) -> tuple[float, int]:
    times, found = [], 0
    for _ in range(runs):
        start = time.perf_counter()
        response = client.get(path)  # type: ignore[attr-defined]
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, (path, response.status_code)
        found = len(re.findall(r'href="/admin/subscribers/\d+"', response.text))
    return statistics.median(times), found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    args = parser.parse_args()
    name, url = create_database()
    os.environ["NEWSLETTER_DATABASE_URL"] = url
    os.environ.setdefault("NEWSLETTER_SECRET_KEY", "bench-secret-bench-secret-bench-secret")
    os.environ["NEWSLETTER_DATA_DIR"] = tempfile.mkdtemp()
    try:
        upgrade(url)
        start = time.perf_counter()
        fill(url, args.subscribers)
        fill_s = time.perf_counter() - start
        client = TestClient(create_app())
        page = client.get("/admin/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        client.post("/admin/login", data={"email": "bench@example.com", "password": PASSWORD, "csrf_token": token})
        deep = args.subscribers - 1000
        cases = [("first page", "/admin/subscribers"),
                 (f"page after id {deep:,}", f"/admin/subscribers?after={deep}"),
                 ("list=other, status=confirmed", "/admin/subscribers?list=other&status=confirmed"),
                 ("status=unsubscribed (2%)", "/admin/subscribers?status=unsubscribed"),
                 ("search: exact address", f"/admin/subscribers?q=reader{deep}@example{deep % 97}.com"),
                 ("search: common part", "/admin/subscribers?q=example5"),
                 ("dashboard (list counts)", "/admin")]
        rows = [(label, *timed(client, path)) for label, path in cases]
        dispose_engines()
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    lines = ["## Admin pages over many subscribers (`python -m bench.admin_pages`)", "",
             f"{args.subscribers:,} subscribers (two lists, 2% unsubscribed, 5% pending) in PostgreSQL 15, filled in "
             f"{fill_s:.0f} s; median of 5 requests through the whole app (session, keyset query, template), "
             "50 rows a page, no OFFSET and no COUNT(*) of the table.", "",
             "| page | median ms | rows shown |", "|---|---|---|"]
    lines += [f"| {label} | {ms:.0f} | {found} |" for label, ms, found in rows]
    body = "\n".join(lines)
    print(body)
    write_section("admin-pages", body)


if __name__ == "__main__":
    main()
