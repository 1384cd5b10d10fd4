"""Throwaway PostgreSQL databases for the benchmarks: each run gets its own, dropped when the process exits (also
after an error or Ctrl-C), so an interrupted benchmark leaves nothing behind."""

from __future__ import annotations

import atexit
import os
import uuid

import psycopg

from mailer.db import dispose_engines

ADMIN_URL = os.environ.get("NEWSLETTER_TEST_PG", "postgresql://root@127.0.0.1:5432/test")


def create_database() -> tuple[str, str]:
    """(name, URL) of a new empty database beside ADMIN_URL's."""
    name = f"nl_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    atexit.register(drop_database, name)
    return name, ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def drop_database(name: str) -> None:
    """Drop a bench database, closing this process's pooled connections to it first (FORCE ends any other's)."""
    dispose_engines()
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
