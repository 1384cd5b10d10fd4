"""Clients that hang up mid-request must never cost the server its database pool (issue 14).

A burst that ends with a hundred connections closed mid-request (what wrk does when it stops, or a crowd of phones
losing signal) used to leave the whole pool `idle in transaction` and the server unable to answer. These tests hang up
on a real uvicorn server on PostgreSQL, then ask it for a page that needs the database.
"""

from __future__ import annotations

import logging
import socket
import struct
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from sqlalchemy import select

from mailer.db import session_scope
from mailer.settings import reset_settings
from subscribers import mailing_lists
from subscribers.models import Subscriber, Subscription, SubscriptionStatus
from subscribers.tokens import Purpose, link
from tests.support.audience import make_audience
from worker.app import reconfigure

CLIENTS = 100


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def queued(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Production's shape: the web process queues confirmation emails in Redis (no worker needed here). Run inline,
    the emails would be rendered in the server's threads, still busy after the test has ended."""
    monkeypatch.setenv("NEWSLETTER_BROKER_URL", redis_url)
    reset_settings()
    reconfigure()


@pytest.fixture
def server_log() -> Iterator[_Records]:
    """What uvicorn logs as errors (its loggers do not propagate to pytest's caplog)."""
    handler = _Records()
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def _hang_up(sockets: list[socket.socket]) -> None:
    """Close with RST, as a client that vanishes does: the server learns it only when it next reads or writes."""
    for sock in sockets:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


def _open(site: str, raw: bytes) -> socket.socket:
    parts = urlsplit(site)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=5)
    sock.sendall(raw)
    return sock


def _app_connections(pg_url: str) -> dict[str, int]:
    """The web app's PostgreSQL sessions by state (the test database is this session's own)."""
    name = pg_url.rsplit("/", 1)[1]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        rows = conn.execute("SELECT coalesce(state, ''), count(*) FROM pg_stat_activity WHERE datname = %s "
                            "AND pid <> pg_backend_pid() AND backend_type = 'client backend' GROUP BY 1",
                            (name,)).fetchall()
    return {state: count for state, count in rows}


def _answers_at_once(site: str) -> None:
    """A page that needs the database answers within a couple of seconds, pool free, nobody idle in a transaction."""
    started = time.monotonic()
    response = httpx.get(f"{site}/lists/weekly/subscribe", timeout=10)
    assert response.status_code == 200, response.text
    assert time.monotonic() - started < 3, f"the server took {time.monotonic() - started:.1f}s to answer"


def _assert_pool_free(pg_url: str) -> None:
    """Once the server has caught up (a few seconds at most), none of its connections is left in a transaction."""
    deadline = time.monotonic() + 5
    states = _app_connections(pg_url)
    while (states.get("idle in transaction") or states.get("active")) and time.monotonic() < deadline:
        time.sleep(0.1)
        states = _app_connections(pg_url)
    assert not states.get("idle in transaction"), f"connections left in a transaction: {states}"
    assert not states.get("active"), f"connections still busy: {states}"


def _stuck_transactions(pg_url: str, older_than_s: float) -> int:
    """The app's connections whose transaction has been open longer than any request of ours takes."""
    name = pg_url.rsplit("/", 1)[1]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid() "
                           "AND xact_start < now() - make_interval(secs => %s)", (name, older_than_s)).fetchone()
    assert row is not None
    return int(row[0])


def _tracebacks(log: _Records) -> list[str]:
    return [r.getMessage() for r in log.records if r.exc_info or "Traceback" in r.getMessage()]


def test_hundred_one_click_unsubscribes_hung_up_leave_the_pool_free(pg_url: str, queued: None, site: str,
                                                                    server_log: _Records) -> None:
    audience = make_audience(CLIENTS, pending=0, unsubscribed=0, suppressed=0)
    with session_scope() as session:
        ids = list(session.scalars(select(Subscriber.id).order_by(Subscriber.id)))
    body = b"List-Unsubscribe=One-Click"
    sockets = []
    for subscriber_id in ids:
        path = urlsplit(link(Purpose.UNSUBSCRIBE, subscriber_id, audience.list_id)).path
        sockets.append(_open(site, (f"POST {path} HTTP/1.1\r\nHost: x\r\n"
                                    "Content-Type: application/x-www-form-urlencoded\r\n"
                                    f"Content-Length: {len(body)}\r\n\r\n").encode() + body))
    time.sleep(0.3)  # the server is now in the middle of many of them
    _hang_up(sockets)
    _answers_at_once(site)
    _assert_pool_free(pg_url)
    # What a request finished before the hang-up did is kept; nothing is half-done.
    with session_scope() as session:
        states = set(session.scalars(select(Subscription.status)))
    assert states <= {SubscriptionStatus.CONFIRMED, SubscriptionStatus.UNSUBSCRIBED}
    assert _tracebacks(server_log) == []


def test_hundred_page_loads_and_sign_ups_hung_up_leave_the_pool_free(pg_url: str, queued: None, site: str,
                                                                    server_log: _Records) -> None:
    """Half read a page, half sign up: more requests than the pool has connections, all abandoned."""
    with session_scope() as session:
        mailing_lists.create_list(session, "weekly", "Digital Digest Weekly")
    csrf = "c" * 43
    sockets = []
    for i in range(CLIENTS):
        if i % 2:
            sockets.append(_open(site, b"GET /lists/weekly/subscribe HTTP/1.1\r\nHost: x\r\n\r\n"))
            continue
        body = f"email=reader{i}%40example.com&csrf_token={csrf}".encode()
        sockets.append(_open(site, ("POST /lists/weekly/subscribe HTTP/1.1\r\nHost: x\r\n"
                                    f"Cookie: nl_csrf={csrf}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                                    f"Content-Length: {len(body)}\r\n\r\n").encode() + body))
    time.sleep(0.3)
    _hang_up(sockets)
    _answers_at_once(site)
    _assert_pool_free(pg_url)
    assert _tracebacks(server_log) == []


def test_clients_gone_mid_body_log_no_traceback(pg_url: str, queued: None, site: str, server_log: _Records) -> None:
    """Bodies cut short (the Content-Length promises more than ever arrives) on every form route."""
    audience = make_audience(1, pending=0, unsubscribed=0, suppressed=0)
    with session_scope() as session:
        subscriber_id = session.scalar(select(Subscriber.id))
    assert subscriber_id is not None
    paths = ["/lists/weekly/subscribe", urlsplit(link(Purpose.UNSUBSCRIBE, subscriber_id, audience.list_id)).path,
             urlsplit(link(Purpose.CONFIRM, subscriber_id, audience.list_id)).path,
             urlsplit(link(Purpose.PREFERENCES, subscriber_id)).path]
    sockets = []
    for i in range(CLIENTS):
        path = paths[i % len(paths)]
        sockets.append(_open(site, (f"POST {path} HTTP/1.1\r\nHost: x\r\n"
                                    "Content-Type: application/x-www-form-urlencoded\r\n"
                                    "Content-Length: 5000\r\n\r\nemail=a%40example.com&na").encode()))
    time.sleep(0.3)
    _hang_up(sockets)
    _answers_at_once(site)
    _assert_pool_free(pg_url)
    assert _tracebacks(server_log) == []
    with session_scope() as session:  # nothing half-submitted was acted on
        assert session.scalar(select(Subscription.status)) is SubscriptionStatus.CONFIRMED

