"""Throwaway PostgreSQL databases for the benchmarks: each run gets its own, and drops it when it is done."""

from __future__ import annotations

import os
import uuid

import psycopg

ADMIN_URL = os.environ.get("NEWSLETTER_TEST_PG", "postgresql://root@127.0.0.1:5432/test")


def create_database() -> tuple[str, str]:
    """(name, URL) of a new empty database beside ADMIN_URL's."""
    name = f"nl_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, ADMIN_URL.rsplit("/", 1)[0] + "/" + name
