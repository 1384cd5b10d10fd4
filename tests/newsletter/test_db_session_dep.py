"""The request's database session (newsletter/web/deps.py) gives its connection back when the handler returns,
whether the handler committed (closed on the event loop: no I/O left) or only read (rolled back in the thread
pool): nothing is left checked out or idle in a transaction."""

from __future__ import annotations

import psycopg
from fastapi.testclient import TestClient

from mailer.db import get_engine, session_scope
from newsletter.web.app import create_app
from subscribers import mailing_lists, service
from subscribers.models import ConsentSource
from subscribers.tokens import Purpose, link


def _left_over(url: str) -> tuple[int, int]:
    """Connections the app's pool has lent out, and this database's connections idle in a transaction."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                           "AND state = 'idle in transaction' AND pid <> pg_backend_pid()").fetchone()
    return get_engine().pool.checkedout(), int(row[0]) if row else -1  # type: ignore[attr-defined]


def test_read_only_and_committing_handlers_leave_nothing_open(pg_url: str) -> None:
    with session_scope() as session:
        weekly = mailing_lists.create_list(session, "weekly", "Weekly")
        outcome = service.subscribe(session, weekly, "reader@example.com", source=ConsentSource.ADMIN,
                                    confirmed=True, consent_note="test")
        assert outcome.subscription is not None
        path = link(Purpose.UNSUBSCRIBE, outcome.subscription.subscriber_id, weekly.id).removeprefix(
            "http://testserver")
    client = TestClient(create_app())
    assert client.get("/lists/weekly/logo").status_code == 404  # reads, never commits
    assert _left_over(pg_url) == (0, 0)
    answer = client.post(path, content=b"List-Unsubscribe=One-Click",
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 200  # commits
    assert _left_over(pg_url) == (0, 0)
    assert client.get(path).status_code == 200  # the page after: reads again
    assert _left_over(pg_url) == (0, 0)
