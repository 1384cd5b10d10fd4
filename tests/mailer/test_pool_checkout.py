"""The connection pool without pool_pre_ping: a checkout of a live connection sends the server nothing, and a
connection the server has closed (terminated backend, restarted server) is replaced before anyone uses it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import text

from mailer import db
from mailer.settings import reset_settings
from tests.support.postgres import PrivatePostgres


def _activity(url: str, pid: int) -> tuple[str, object] | None:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT query, state_change FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
    return (str(row[0]), row[1]) if row else None


def _backend_pid() -> int:
    with db.session_scope() as session:
        return int(session.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_a_checkout_sends_nothing_to_a_live_connection(pg_url: str) -> None:
    """pool_pre_ping sent SELECT 1 on every checkout; the server must see no statement between two uses now."""
    pid = _backend_pid()
    before = _activity(pg_url, pid)
    assert before is not None
    with db.get_engine().connect() as conn:  # the checkout, with nothing run on it
        assert _activity(pg_url, pid) == before
        again = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
    assert again == pid  # the same pooled connection, so the check above looked at the right backend


def test_a_terminated_connection_is_replaced_at_checkout(pg_url: str) -> None:
    pid = _backend_pid()
    with psycopg.connect(pg_url, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
        deadline = time.monotonic() + 10
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert _backend_pid() != pid  # no OperationalError: the pool noticed and connected again


def test_a_notice_on_an_idle_connection_costs_a_ping_not_the_connection(pg_url: str) -> None:
    """Something to read on a pooled connection that is still alive (here a NOTIFY it listens for): the ping
    passes and the connection is kept."""
    engine = db.get_engine()
    with engine.connect() as conn:
        conn.execute(text("LISTEN pool_test"))
        conn.commit()
        pid = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
        conn.commit()
    with psycopg.connect(pg_url, autocommit=True) as other:
        other.execute("NOTIFY pool_test")
    time.sleep(0.2)
    assert _backend_pid() == pid


@pytest.fixture
def private_postgres(monkeypatch: pytest.MonkeyPatch) -> Iterator[PrivatePostgres]:
    server = PrivatePostgres().start()
    try:
        monkeypatch.setenv("NEWSLETTER_DATABASE_URL", server.create_database("pool"))
        reset_settings()
        db.dispose_engines()
        yield server
    finally:
        db.dispose_engines()
        server.destroy()


def test_a_database_restart_is_survived_by_every_pooled_connection(private_postgres: PrivatePostgres) -> None:
    """Fill the pool, restart the server (-m immediate, a crash recovery), then use as many connections at once:
    every one of them works, none is a dead one from before the restart."""
    held = 8
    gate = threading.Barrier(held)
    pids: list[int] = []
    errors: list[BaseException] = []

    def use() -> None:
        try:
            with db.session_scope() as session:
                gate.wait(timeout=30)  # all connections checked out at once: the pool ends up holding `held`
                pids.append(int(session.execute(text("SELECT pg_backend_pid()")).scalar_one()))
        except BaseException as exc:  # reported below, with the others
            errors.append(exc)

    def burst() -> None:
        threads = [threading.Thread(target=use) for _ in range(held)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    burst()
    assert not errors and len(set(pids)) == held
    private_postgres.restart_immediate()
    pids.clear()
    burst()
    assert not errors, errors
    assert len(set(pids)) == held
