"""The public pages' few seconds of memory (newsletter/web/pagecache.py): what it keeps, for how long, and what it
never keeps (the per-request CSRF token and CSP nonce)."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from fastapi.testclient import TestClient

from mailer.db import session_scope
from mailer.settings import reset_settings
from newsletter.web import pagecache
from newsletter.web.app import create_app
from newsletter.web.pagecache import TTLCache
from subscribers import mailing_lists
from tests.support.audience import make_audience
from worker.models import Send, SendStatus

T = TypeVar("T")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on a thread of its own: an earlier test in this process may have left a loop running here."""
    result: list[T] = []
    failure: list[BaseException] = []

    def main() -> None:
        try:
            result.append(asyncio.run(coroutine))
        except BaseException as exc:  # re-raised below, in the test's thread
            failure.append(exc)

    thread = threading.Thread(target=main)
    thread.start()
    thread.join(timeout=60)
    if failure:
        raise failure[0]
    return result[0]


def _cache_for(monkeypatch: pytest.MonkeyPatch, seconds: str) -> None:
    monkeypatch.setenv("NEWSLETTER_PUBLIC_CACHE_S", seconds)
    reset_settings()


def test_a_value_is_kept_for_its_seconds_then_loaded_again(monkeypatch: pytest.MonkeyPatch) -> None:
    _cache_for(monkeypatch, "5")
    clock, loads = Clock(), []
    cache: TTLCache[str] = TTLCache(clock)

    def load() -> str:
        loads.append(clock.now)
        return f"v{len(loads)}"

    assert cache.get("k", load) == "v1"
    clock.now += 4.9
    assert cache.get("k", load) == "v1" and len(loads) == 1
    clock.now += 0.2  # 5.1 s after the load: stale
    assert cache.get("k", load) == "v2" and len(loads) == 2
    assert cache.get("other", load) == "v3"  # keys are apart


def test_none_is_kept_too_and_zero_seconds_keeps_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    _cache_for(monkeypatch, "5")
    cache: TTLCache[str | None] = TTLCache(Clock())
    loads: list[int] = []
    for _ in range(3):
        assert cache.get("missing", lambda: loads.append(1)) is None  # type: ignore[func-returns-value]
    assert len(loads) == 1  # a list that is not there is not asked for again by every request
    _cache_for(monkeypatch, "0")
    for _ in range(3):
        cache.get("missing", lambda: loads.append(1))  # type: ignore[func-returns-value]
    assert len(loads) == 4


def test_off_by_default_except_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    assert pagecache.ttl_s() == 0
    monkeypatch.setenv("NEWSLETTER_ENV", "production")
    monkeypatch.setenv("NEWSLETTER_BASE_URL", "https://news.example.com")
    reset_settings()
    assert pagecache.ttl_s() == 5
    _cache_for(monkeypatch, "-3")
    assert pagecache.ttl_s() == 0


def test_a_flood_of_made_up_keys_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    _cache_for(monkeypatch, "60")
    cache: TTLCache[None] = TTLCache(Clock())
    for number in range(pagecache.MAX_ENTRIES * 3):
        cache.get(f"slug-{number}", lambda: None)
    assert len(cache._entries) <= pagecache.MAX_ENTRIES


def _page(client: TestClient, path: str) -> tuple[str, str, str]:
    """The page, its CSRF field and its CSP nonce."""
    response = client.get(path)
    assert response.status_code == 200, response.text
    field = re.search(r'name="csrf_token" value="([^"]+)"', response.text)
    nonce = re.search(r"'nonce-([^']+)'", response.headers["content-security-policy"])
    assert nonce is not None
    return response.text, field.group(1) if field else "", nonce.group(1)


def test_the_subscribe_page_keeps_the_list_never_the_token_or_nonce(pg_url: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    _cache_for(monkeypatch, "1")
    with session_scope() as session:
        mailing_lists.create_list(session, "weekly", "Digital Digest Weekly")
    app = create_app()
    first, second = TestClient(app), TestClient(app)  # two browsers, two CSRF cookies
    page_a, token_a, nonce_a = _page(first, "/lists/weekly/subscribe")
    with session_scope() as session:
        mailing_lists.get_list(session, "weekly").name = "Renamed Weekly"
    page_b, token_b, nonce_b = _page(second, "/lists/weekly/subscribe")
    assert "Digital Digest Weekly" in page_a and "Digital Digest Weekly" in page_b  # the kept row, by design
    assert token_a and token_b and token_a != token_b and nonce_a != nonce_b
    assert token_a == first.cookies["nl_csrf"] and token_b == second.cookies["nl_csrf"]
    assert _page(first, "/lists/weekly/subscribe")[1] == token_a  # each browser keeps its own
    time.sleep(1.1)
    assert "Renamed Weekly" in _page(second, "/lists/weekly/subscribe")[0]


def test_a_list_created_after_a_404_shows_once_the_404_expires(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _cache_for(monkeypatch, "1")
    client = TestClient(create_app())
    assert client.get("/lists/later/subscribe").status_code == 404
    with session_scope() as session:
        mailing_lists.create_list(session, "later", "Later")
    assert client.get("/lists/later/subscribe").status_code == 404
    time.sleep(1.1)
    assert client.get("/lists/LATER/subscribe").status_code == 200


def test_without_the_cache_an_edit_shows_at_once(pg_url: str) -> None:
    with session_scope() as session:
        mailing_lists.create_list(session, "weekly", "Digital Digest Weekly")
    client = TestClient(create_app())
    assert "Digital Digest Weekly" in client.get("/lists/weekly/subscribe").text
    with session_scope() as session:
        mailing_lists.get_list(session, "weekly").name = "Renamed Weekly"
    assert "Renamed Weekly" in client.get("/lists/weekly/subscribe").text


def test_the_archive_index_is_kept_for_its_seconds(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A list made private leaves the cached index when the index expires (a few seconds), not before."""
    _cache_for(monkeypatch, "1")
    audience = make_audience(1, pending=0, unsubscribed=0, suppressed=0)
    with session_scope() as session:
        session.add(Send(issue_id=audience.issue_id, list_id=mailing_lists.get_list(session, "weekly").id,
                         status=SendStatus.DONE, transport="outbox"))
    client = TestClient(create_app())
    page, _token, nonce = _page(client, "/archive")
    assert "/lists/weekly/archive" in page
    with session_scope() as session:
        mailing_lists.configure_signup(mailing_lists.get_list(session, "weekly"), archive_private=True)
    again, _token, other_nonce = _page(client, "/archive")
    assert "/lists/weekly/archive" in again and other_nonce != nonce
    time.sleep(1.1)
    assert "/lists/weekly/archive" not in _page(client, "/archive")[0]


def test_a_crowd_loads_once_and_an_expired_value_is_reloaded_by_one_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """Twenty requests at once on a cold key make one query; when it expires, the first request reloads it and
    those arriving meanwhile get the value just expired, at once; a value long expired is never served."""
    _cache_for(monkeypatch, "5")
    clock, loads = Clock(), []
    cache: TTLCache[str] = TTLCache(clock)
    gate = threading.Event()

    def slow_load() -> str:
        gate.wait(timeout=10)
        loads.append(clock.now)
        return f"v{len(loads)}"

    async def crowd() -> None:
        cold = [asyncio.ensure_future(cache.aget("k", slow_load)) for _ in range(20)]
        await asyncio.sleep(0.05)
        assert not any(task.done() for task in cold)  # all wait for the one load
        gate.set()
        assert set(await asyncio.gather(*cold)) == {"v1"} and len(loads) == 1
        gate.clear()
        clock.now += 6  # expired a second ago
        reloading = asyncio.ensure_future(cache.aget("k", slow_load))
        await asyncio.sleep(0.05)
        assert [await cache.aget("k", slow_load) for _ in range(5)] == ["v1"] * 5  # not waiting on the reload
        gate.set()
        assert await reloading == "v2" and await cache.aget("k", slow_load) == "v2" and len(loads) == 2
        gate.clear()
        clock.now += 60  # long expired: nobody gets v2 now
        stale = [asyncio.ensure_future(cache.aget("k", slow_load)) for _ in range(3)]
        await asyncio.sleep(0.05)
        gate.set()
        assert set(await asyncio.gather(*stale)) == {"v3"} and len(loads) == 3

    _run(crowd())


def test_a_failed_load_is_not_kept_and_its_waiters_load_again(monkeypatch: pytest.MonkeyPatch) -> None:
    _cache_for(monkeypatch, "5")
    cache: TTLCache[str] = TTLCache(Clock())
    calls: list[int] = []
    gate = threading.Event()

    def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            gate.wait(timeout=10)
            raise ConnectionError("database restarting")
        return "fresh"

    async def crowd() -> list[str | BaseException]:
        tasks = [asyncio.ensure_future(cache.aget("k", flaky)) for _ in range(3)]
        await asyncio.sleep(0.05)
        gate.set()
        return list(await asyncio.gather(*tasks, return_exceptions=True))

    results = _run(crowd())
    assert isinstance(results[0], ConnectionError) and results[1:] == ["fresh", "fresh"]
