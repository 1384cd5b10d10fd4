"""CSV import throughput into PostgreSQL: generated files of 100k and 1M rows, rows/s and peak memory.

Run: .venv/bin/python -m bench.import [--rows 100000 1000000] [--suppressions N]
Each size runs in a child process on a scratch database, so peak RSS is that import's own.
--suppressions: the database holds N suppressed addresses first (a service that has been sending for years), one
in twenty of them in the file, so the cost of refusing them shows.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from bench.database import ADMIN_URL, create_database
from bench.report import write_section
from mailer.db import new_session, session_scope
from newsletter.migrate import upgrade
from subscribers import importer, mailing_lists


def generate(path: Path, rows: int) -> None:
    with path.open("w") as out:
        out.write("email,name,company,city\n")
        for i in range(rows):
            out.write(f"reader{i}@example{i % 97}.com,Reader {i},Company {i % 1000},City {i % 50}\n")


def suppress(url: str, count: int) -> None:
    """`count` suppressions, every twentieth of them an address of the generated file (reader0, reader20, ...)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("""
            INSERT INTO suppressions (email_hash, email, reason, note, created_at)
            SELECT encode(sha256(convert_to(address, 'UTF8')), 'hex'), address, 'hard_bounce', '', now()
            FROM (SELECT CASE WHEN i %% 20 = 0 THEN 'reader' || i || '@example' || i %% 97 || '.com'
                              ELSE 'gone' || i || '@example.org' END AS address
                  FROM generate_series(0, %s - 1) AS i) AS generated""", (count,))
        conn.execute("ANALYZE suppressions")


def child(csv_path: str, url: str, suppressions: int) -> None:
    os.environ["NEWSLETTER_DATABASE_URL"] = url
    os.environ.setdefault("NEWSLETTER_SECRET_KEY", "bench-secret-bench-secret-bench-secret")

    upgrade(url)
    if suppressions:
        suppress(url, suppressions)
    with session_scope() as session:
        mailing_lists.create_list(session, "bench", "Bench", double_opt_in=False)
    start = time.perf_counter()
    result = importer.import_csv(new_session, Path(csv_path), "bench", confirmed=True, consent_source="bench")
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"imported": result.imported, "seconds": seconds, "peak_mb": peak_kb / 1024}))


def run(rows: int, workdir: Path, suppressions: int) -> dict[str, float]:
    csv_path = workdir / f"people-{rows}.csv"
    generate(csv_path, rows)
    name, url = create_database()
    try:
        out = subprocess.run([sys.executable, "-m", "bench.import", "--child", str(csv_path), url,
                              str(suppressions)],
                             check=True, capture_output=True, text=True)
        figures = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    figures["rows"] = rows
    figures["rows_per_s"] = rows / figures["seconds"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--suppressions", type=int, default=0)
    parser.add_argument("--child", nargs=3)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    with tempfile.TemporaryDirectory() as tmp:
        results = [run(rows, Path(tmp), args.suppressions) for rows in args.rows]
    lines = ["## CSV import (`python -m bench.import`)", "",
             "Generated CSV (email, name, 2 attribute columns), `--confirmed`, into PostgreSQL 15 on this machine; "
             "chunks of 10,000 rows, each one transaction; reading, validating and encoding a chunk for COPY overlaps "
             "writing the previous one.", "",
             "| rows | seconds | rows/s | peak RSS | goal |", "|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['rows']:,} | {r['seconds']:.1f} | {r['rows_per_s']:,.0f} | {r['peak_mb']:.0f} MB | "
                     ">= 60,000 rows/s at 1M, flat memory |")
    body = "\n".join(lines)
    if args.suppressions:  # a variant, not the table of record
        imported = ", ".join(f"{r['imported']:,}" for r in results)
        print(f"With {args.suppressions:,} suppressions in the database (imported: {imported}):")
        print(body)
        return
    print(body)
    write_section("import", body)


if __name__ == "__main__":
    main()
