"""A few seconds' memory, per process, of what public pages read from the database and is the same for everyone.

A crowd on one sign-up page (a newsletter linked from a popular post) or on the archive asks PostgreSQL the same
question hundreds of times a second. Each process now asks once per `NEWSLETTER_PUBLIC_CACHE_S` seconds (5 in
production, 0 = off elsewhere, so a developer sees an edit at once) and renders the page from the answer.

Only rows are kept, never a response: the CSRF token, the CSP nonce and everything else about the request are put
into each page as it is rendered. What is kept are detached ORM objects (their columns loaded, their session closed)
and frozen dataclasses; handlers read them and must not change them or add them to a session.

The price: an edit (a list renamed, made private, an issue published) reaches the public pages of another process
up to that many seconds later.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from mailer.db import new_session
from mailer.settings import get_settings
from subscribers.mailing_lists import plausible_slug
from subscribers.models import MailingList

V = TypeVar("V")
MAX_ENTRIES = 1000  # distinct keys (list slugs) kept; a flood of made-up slugs cannot grow memory beyond this


def ttl_s() -> float:
    settings = get_settings()
    if settings.public_cache_s is not None:
        return max(0.0, settings.public_cache_s)
    return 5.0 if settings.production else 0.0


_ALL: list[TTLCache[object]] = []


def reset() -> None:
    """Forget everything every cache keeps (tests switch databases; the CLI never needs this)."""
    for cache in _ALL:
        cache.clear()


class TTLCache(Generic[V]):
    """Values by key for `ttl_s()` seconds. Thread-safe for `get`; `aget` also loads each key once at a time on its
    event loop: when a value expires under a crowd, one request reloads it while those arriving meanwhile are
    answered with the value just expired (for at most another `ttl_s()`), instead of all of them querying at once
    (a stampede every few seconds, the slowest 1% of a burst)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[str, tuple[float, V]] = {}
        self._lock = threading.Lock()
        self._loading: dict[tuple[int, str], asyncio.Future[None]] = {}  # touched on event loops only
        _ALL.append(self)  # type: ignore[arg-type]  # only cleared through it, whatever it holds

    def _kept(self, key: str) -> tuple[float, V] | None:
        with self._lock:
            return self._entries.get(key)

    def _store(self, key: str, value: V, ttl: float) -> None:
        now = self._clock()
        with self._lock:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
                if len(self._entries) >= MAX_ENTRIES:
                    self._entries.clear()
            self._entries[key] = (now + ttl, value)

    def get(self, key: str, load: Callable[[], V]) -> V:
        """The kept value, or `load()`'s (kept for next time). For code already off the event loop."""
        ttl = ttl_s()
        if ttl > 0:
            kept = self._kept(key)
            if kept is not None and kept[0] > self._clock():
                return kept[1]  # a kept None is a value (a list that is not there)
        value = load()
        if ttl > 0:
            self._store(key, value, ttl)
        return value

    async def aget(self, key: str, load: Callable[[], V]) -> V:
        """The same from an async handler: a hit is answered on the event loop, with no thread-pool hand-off; only
        a miss sends `load` (which queries) to the thread pool, once per key at a time."""
        ttl = ttl_s()
        if ttl <= 0:
            return await run_in_threadpool(load)
        while True:
            kept = self._kept(key)
            now = self._clock()
            if kept is not None and kept[0] > now:
                return kept[1]
            slot = (id(asyncio.get_running_loop()), key)
            pending = self._loading.get(slot)
            if pending is None:
                break
            if kept is not None and kept[0] + ttl > now:
                return kept[1]  # just expired, and being reloaded: this once more
            await asyncio.wait([pending])  # the first load of it, or one long expired: wait for the fresh one
            if pending.cancelled() or pending.exception() is not None:
                return await run_in_threadpool(self.get, key, load)  # that load failed: try our own
        done = asyncio.get_running_loop().create_future()
        self._loading[slot] = done
        try:
            value = await run_in_threadpool(load)
            self._store(key, value, ttl)
            done.set_result(None)
            return value
        except BaseException as exc:
            done.set_exception(RuntimeError(f"loading {key!r} failed: {exc!r}"))
            done.exception()  # retrieved: waiters look at it, and nobody need be told it was never read
            raise
        finally:
            self._loading.pop(slot, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


LISTS: TTLCache[MailingList | None] = TTLCache()


def _load_list(slug: str) -> MailingList | None:
    with new_session() as session:  # closing detaches it, columns loaded (sessions do not expire on commit)
        return session.scalar(select(MailingList).where(MailingList.slug == slug))


async def list_by_slug(slug: str) -> MailingList | None:
    """The list a public URL names (read-only, see above), or None; an implausible slug is not looked up or kept."""
    if not plausible_slug(slug):
        return None
    slug = slug.lower()
    return await LISTS.aget(slug, lambda: _load_list(slug))


LISTS_BY_ID: TTLCache[MailingList | None] = TTLCache()


def _load_list_by_id(list_id: int) -> MailingList | None:
    with new_session() as session:
        return session.get(MailingList, list_id)


async def list_by_id(list_id: int) -> MailingList | None:
    """The list a signed link names (read-only, see above), or None."""
    return await LISTS_BY_ID.aget(str(list_id), lambda: _load_list_by_id(list_id))
