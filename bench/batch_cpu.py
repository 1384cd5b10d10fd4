"""CPU per recipient of the batch path, without the noise of wall time: one process runs `campaigns.send_batch` over a
planned send of --recipients through a SendGrid transport that builds and JSON-encodes each request but sends
nothing, and reports the process's CPU (time.process_time) and its PostgreSQL backends' CPU (/proc) per recipient,
the statements and commits a batch costs, and the rows each table had written per recipient (pg_stat_user_tables,
with the share of updates that were HOT, i.e. wrote no index entry).
Wall time on a shared 2-core machine moves 20-30% between runs; these two figures move a few percent, so they can
tell where a change in throughput comes from.

Run: .venv/bin/python -m bench.batch_cpu [--recipients 30000] [--untracked]
Against another checkout (a commit before a change): copy this file there and run it the same way from that
checkout with PYTHONPATH=. (it needs only that checkout's bench.send.populate, worker.campaigns and transports).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.event import listen

from bench.send import populate
from mailer.batch import Content, Recipient, Result
from mailer.db import dispose_engines, get_engine, session_scope, utcnow
from mailer.settings import get_settings, reset_settings
from mailer.transports import get_transport
from worker import campaigns

try:
    from mailer.collector import freeze_loaded, paused
except ImportError:  # a checkout from before mailer/collector.py: its workers left the collector alone
    freeze_loaded, paused = gc.collect, contextlib.nullcontext  # type: ignore[assignment]

try:
    from worker import sends
except ImportError:  # a checkout from before the architecture step, measured for comparison
    sends = None  # type: ignore[assignment]

ADMIN_URL = os.environ.get("NEWSLETTER_TEST_PG", "postgresql://root@127.0.0.1:5432/test")


def backend_cpu_s(database: str) -> float:
    """CPU seconds used so far by every PostgreSQL backend connected to `database` (this machine's /proc)."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        pids = [row[0] for row in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,))]
    total = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def table_writes(url: str) -> dict[str, tuple[int, int, int, int]]:
    """{table: (inserted, updated, of which HOT, deleted)} so far. Call after the app's connections are closed: a
    backend reports its counts when it exits (or at most once a second while idle)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        return {row[0]: tuple(row[1:]) for row in conn.execute(  # type: ignore[misc]
            "SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del FROM pg_stat_user_tables")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=30_000)
    parser.add_argument("--untracked", action="store_true", help="a list without click and open tracking")
    args = parser.parse_args()
    name = f"nl_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    os.environ.update({"NEWSLETTER_DATABASE_URL": url, "NEWSLETTER_SECRET_KEY": "bench-secret-bench-secret-bench",
                       "NEWSLETTER_BASE_URL": "https://news.example.com", "NEWSLETTER_TRANSPORT": "sendgrid",
                       "NEWSLETTER_SENDGRID_API_KEY": "SG.bench", "NEWSLETTER_SENDGRID_HOST": "http://127.0.0.1:9",
                       "NEWSLETTER_BATCH_SIZE": "1000"})
    reset_settings()
    dispose_engines()
    try:
        list_id, issue_id = populate(url, args.recipients, **({"tracked": False} if args.untracked else {}))
        with session_scope() as session:
            if sends is not None:
                send_id = sends.create(session, issue_id, list_id, sends.SendOptions(
                    scheduled_at=utcnow() + timedelta(days=1), transport="sendgrid")).id
            else:
                send_id = campaigns.create_send(  # type: ignore[attr-defined]
                    session, issue_id, list_id, transport="sendgrid").id
        with session_scope() as session:
            campaigns.start_send(session, send_id)
        with session_scope() as session:
            campaigns.plan_send(session, send_id)
        with session_scope() as session:
            if hasattr(campaigns, "pending_ranges"):  # batches cut by the plan (NEWSLETTER_BATCH_SIZE)
                ranges = campaigns.pending_ranges(session, send_id)
            else:  # a checkout from before pending_ranges
                ranges = campaigns.batch_ranges(session, send_id, 1000)
        real: Any = get_transport(get_settings(), "sendgrid")

        class Encoded:
            """The real transport's payload, built and encoded as the client would send it; no request."""

            name, max_batch = real.name, real.max_batch

            def send(self, content: Content, recipients: Sequence[Recipient]) -> list[Result]:
                json.dumps(real.payload(content, recipients))
                return [Result(r, ok=True, message_id="bench") for r in recipients]

            def close(self) -> None:
                pass

        transport: Any = Encoded()
        campaigns.send_batch(send_id, *ranges[0], transport=transport)  # warm: caches, pool, prepared statements
        dispose_engines()  # the warm-up's table counts are reported now, not mixed into the measured ones
        writes_before = table_writes(url)
        statements: list[str] = []
        listen(get_engine(), "before_cursor_execute", lambda *args: statements.append(args[2]))
        listen(get_engine(), "commit", lambda *args: statements.append("COMMIT"))
        campaigns.send_batch(send_id, *ranges[1], transport=transport)  # connect outside the measured part
        freeze_loaded()  # as a worker's pool process does when it starts
        database_before, python_before = backend_cpu_s(name), time.process_time()
        for first, last in ranges[2:]:
            with paused():  # as the worker's task runs each batch
                campaigns.send_batch(send_id, first, last, transport=transport)
        python_s, database_s = time.process_time() - python_before, backend_cpu_s(name) - database_before
        dispose_engines()
        writes = {table: [after - before for after, before in zip(counts, writes_before.get(table, (0, 0, 0, 0)),
                                                                   strict=True)]
                  for table, counts in table_writes(url).items()}
        batches = len(ranges) - 1
        count = sum(1 for _ in ranges[2:]) * 1000
        print(f"python {python_s / count * 1e6:.1f} us/recipient, postgres {database_s / count * 1e6:.1f} "
              f"us/recipient ({count:,} recipients, load {os.getloadavg()[0]:.1f})")
        commits = statements.count("COMMIT")
        print(f"per batch of 1,000: {(len(statements) - commits) / batches:.1f} statements, "
              f"{commits / batches:.1f} commits")
        for table, (inserted, updated, hot, deleted) in sorted(writes.items()):
            if inserted or updated or deleted:
                print(f"  {table}: per recipient {inserted / (batches * 1000):.2f} inserted, "
                      f"{updated / (batches * 1000):.2f} updated ({hot / max(updated, 1):.0%} HOT), "
                      f"{deleted / (batches * 1000):.2f} deleted; "
                      f"per batch {(inserted + updated + deleted) / batches:.1f} rows written")
    finally:
        dispose_engines()
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
