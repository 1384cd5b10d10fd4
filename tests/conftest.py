"""Shared fixtures: an isolated settings environment per test, and real SQLite / PostgreSQL / Redis.

PostgreSQL: one throwaway database per test session, migrated with Alembic, truncated after each test.
SQLite: a fresh file per test. Tests that take the ``db_url`` fixture run once on each.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis as redis_lib
from sqlalchemy import text

from mailer import db as db_module
from mailer.settings import get_settings, reset_settings
from newsletter.migrate import upgrade
from newsletter.schema import metadata
from newsletter.web import pagecache
from tests.support.browser import launch
from worker.app import reconfigure

PG_ADMIN_URL = os.environ.get("NEWSLETTER_TEST_PG", "postgresql://root@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("NEWSLETTER_TEST_REDIS", "redis://127.0.0.1:6379/15")
TEST_SECRET = "test-secret-key-that-is-long-enough-0123456789"


def _reset_process_state() -> None:
    reset_settings()
    db_module.dispose_engines()
    pagecache.reset()
    reconfigure()


@pytest.fixture(autouse=True)
def settings_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own data dir, outbox and SQLite file, and no broker unless it asks for one."""
    for name in list(os.environ):
        if name.startswith("NEWSLETTER_") and not name.startswith("NEWSLETTER_TEST_"):
            monkeypatch.delenv(name)
    data = tmp_path / "data"
    monkeypatch.setenv("NEWSLETTER_DATA_DIR", str(data))
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("NEWSLETTER_BASE_URL", "http://testserver")
    monkeypatch.setenv("NEWSLETTER_FROM_EMAIL", "digest@news.example.com")
    _reset_process_state()
    yield data
    _reset_process_state()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A migrated PostgreSQL database for this test session, dropped at the end."""
    name = f"nl_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    url = f"{base}/{name}"

    # Migrations are what production runs; tests/test_foundation.py checks they match the models.
    upgrade(url)
    db_module.dispose_engines()
    yield url
    db_module.dispose_engines()
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _truncate_all(url: str) -> None:
    names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    engine = db_module.get_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


def _use_database(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", url)
    _reset_process_state()


@pytest.fixture
def sqlite_url(settings_env: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{settings_env / 'test.db'}"
    _use_database(url, monkeypatch)
    metadata.create_all(db_module.get_engine(url))
    return url


@pytest.fixture
def pg_url(pg_database: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    _use_database(pg_database, monkeypatch)
    _truncate_all(pg_database)
    yield pg_database
    db_module.dispose_engines()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Run the test once on SQLite and once on PostgreSQL."""
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


@pytest.fixture
def redis_url() -> Iterator[str]:
    client = redis_lib.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


@pytest.fixture
def settings():
    return get_settings()


@pytest.fixture(scope="session")
def browser():
    with launch() as chromium:
        yield chromium
