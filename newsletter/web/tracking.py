"""The click redirect (`/c/{token}/{n}`) and the open pixel (`/o/{token}`): fast, never blocked by the database.

A request verifies the token (one HMAC), finds the URL in a per-process cache of the send's links (the database is
read once per send and process), queues the hit in memory and answers. A writer thread stores queued hits in
batches every `FLUSH_S` seconds (small and frequent, so each holds the interpreter lock for a few ms only);
classification and counting happen later, in the worker (worker/engagement.py).
Only URLs that were in the send's message are ever redirected to, so the endpoint is no open redirect; tokens never
expire, so a link in a message works for years.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from mailer.db import session_scope, utcnow
from mailer.tracking import TRAP_POSITION
from subscribers.tokens import TrackTokens
from worker.engagement import EngagementKind, Hit, send_links, store_hits, truncate_address

log = logging.getLogger(__name__)

FLUSH_S = 0.1
MAX_QUEUED = 100_000  # beyond this (the database is away for minutes) new hits are dropped, never the service
PIXEL = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,"
         b"\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")


class HitRecorder:
    """Hits queued in memory and written in batches by one thread: a click costs a list append, not a commit."""

    def __init__(self, store: Callable[[list[Hit]], object] | None = None) -> None:
        self._store = store or _store
        self._queue: list[Hit] = []
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def record(self, hit: Hit) -> None:
        with self._lock:
            if len(self._queue) >= MAX_QUEUED:
                return
            self._queue.append(hit)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="engagement-writer", daemon=True)
                self._thread.start()

    def flush(self) -> int:
        """Write what is queued now (the thread calls this; shutdown and tests call it to be sure). One flush at a
        time: a caller returns only once everything queued before its call is stored, even by the thread."""
        with self._flushing:
            with self._lock:
                batch, self._queue = self._queue, []
            if not batch:
                return 0
            try:
                self._store(batch)
            except Exception:  # the database is away: keep the hits for the next round
                log.exception("storing %s engagement hits failed; will retry", len(batch))
                with self._lock:
                    self._queue[:0] = batch[: MAX_QUEUED - len(self._queue)]
                return 0
            return len(batch)

    def _run(self) -> None:
        while True:
            self._wake.wait(FLUSH_S)
            self.flush()


def _store(batch: list[Hit]) -> None:
    with session_scope() as session:
        store_hits(session, batch)


class LinkCache:
    """{send: {position: URL}}, read once per send; a bounded LRU so a process never holds every send ever made.

    One read per send even when a hundred clicks of a fresh send arrive at once (a newsletter lands in many inboxes
    in the same minute): the first miss starts the read and the others await it, instead of each taking a pooled
    connection and a thread for the same rows, which is what made the slowest requests of a burst slow.
    """

    def __init__(self, size: int = 256, loader: Callable[[int], dict[int, str]] | None = None) -> None:
        self._items: OrderedDict[int, dict[int, str]] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()
        self._loader = loader or _load_links
        self._loading: dict[int, asyncio.Future[dict[int, str]]] = {}

    async def url(self, send_id: int, position: int) -> str | None:
        with self._lock:
            links = self._items.get(send_id)
            if links is not None:
                self._items.move_to_end(send_id)
        if links is None:
            links = await self._load(send_id)
        return links.get(position)

    async def _load(self, send_id: int) -> dict[int, str]:
        pending = self._loading.get(send_id)  # the event loop's thread only: no lock needed for this dict
        if pending is not None:
            return await asyncio.shield(pending)
        pending = asyncio.get_running_loop().create_future()
        self._loading[send_id] = pending
        try:
            links = await run_in_threadpool(self._loader, send_id)
        except BaseException as exc:  # the waiters get the same error; the next click tries again
            pending.set_exception(exc)
            pending.exception()  # retrieved: no "never retrieved" warning when nobody else was waiting
            raise
        finally:
            self._loading.pop(send_id, None)
        pending.set_result(links)
        with self._lock:
            self._items[send_id] = links
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return links

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def _load_links(send_id: int) -> dict[int, str]:
    with session_scope() as session:
        return send_links(session, send_id)


recorder = HitRecorder()
links = LinkCache()
clock: Callable[[], datetime] = utcnow  # when a hit happened; tests set it instead of sleeping

# Answers as raw ASGI messages: a Response object, its header normalisation and a Request wrapper cost more than
# the rest of a click together (bench/tracking.py), and this is the busiest URL a newsletter has.
_NO_STORE = [(b"cache-control", b"no-store, private"), (b"referrer-policy", b"no-referrer")]
_GONE = (b"<!doctype html><meta charset=utf-8><title>Link not found</title>"
         b"<h1>This link does not lead anywhere</h1><p>It may have been copied incompletely.</p>")
_LOCATION_SAFE = ":/%#?=@[]!$&'()*+,;"  # what Starlette's RedirectResponse leaves unquoted


@dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""


def _bytes_answer(status: int, body: bytes, content_type: bytes, extra: list[tuple[bytes, bytes]]) -> Answer:
    return Answer(status, [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
                           *_NO_STORE, *extra], body)


GONE = _bytes_answer(404, _GONE, b"text/html; charset=utf-8", [])
NO_CONTENT = Answer(204, list(_NO_STORE))
IMAGE = _bytes_answer(200, PIXEL, b"image/gif", [])
NOT_ALLOWED = Answer(405, [(b"allow", b"GET, HEAD"), (b"content-length", b"0")])


@dataclass(frozen=True)
class Client:
    """What a hit keeps of the request: the method, the client's network and its user agent."""

    method: str
    host: str | None
    user_agent: str

    @classmethod
    def of(cls, scope: Scope) -> Client:
        agent = next((value for name, value in scope.get("headers") or () if name == b"user-agent"), b"")
        client = scope.get("client")
        return cls(scope.get("method", "GET"), client[0] if client else None,
                   agent[:300].decode("latin-1"))

    def hit(self, send_id: int, delivery_id: int, kind: EngagementKind, position: int | None, source: str,
            at: datetime) -> Hit:
        return Hit(send_id, delivery_id, kind, position, source, self.method, at, truncate_address(self.host),
                   self.user_agent)


async def click(client: Client, token: str, position: int) -> Answer:
    data = TrackTokens().read(token)
    if data is None or not 0 <= position < 10_000:
        return GONE
    at = clock()
    if position == TRAP_POSITION:  # nobody can see this link; whoever fetches it is a machine
        if data.record:
            recorder.record(client.hit(data.send_id, data.delivery_id, EngagementKind.CLICK, position, "redirect", at))
        return NO_CONTENT
    url = await links.url(data.send_id, position)
    if url is None:
        return GONE
    if data.record:
        recorder.record(client.hit(data.send_id, data.delivery_id, EngagementKind.CLICK, position, "redirect", at))
    location = quote(url, safe=_LOCATION_SAFE).encode("latin-1")
    return Answer(302, [(b"location", location), (b"content-length", b"0"), *_NO_STORE])


async def pixel(client: Client, token: str) -> Answer:
    data = TrackTokens().read(token)
    if data is not None and data.record:
        recorder.record(client.hit(data.send_id, data.delivery_id, EngagementKind.OPEN, None, "pixel", clock()))
    # Always the image: a broken image in a message looks like a broken message.
    return IMAGE


class TrackingFastPath:
    """ASGI middleware, outermost: `/c/` and `/o/` are answered before routing and the other middleware (sessions,
    CSRF cookies, templates), which they need none of. A shared link is the busiest URL a newsletter has."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(("/c/", "/o/")):
            await self.app(scope, receive, send)
            return
        client = Client.of(scope)
        if client.method not in ("GET", "HEAD"):
            answer = NOT_ALLOWED
        elif path.startswith("/o/"):
            answer = await pixel(client, path[3:])
        else:
            token, _, position = path[3:].partition("/")
            answer = await click(client, token, int(position)) if position.isdigit() and len(position) < 6 else GONE
        await send({"type": "http.response.start", "status": answer.status, "headers": answer.headers})
        await send({"type": "http.response.body", "body": answer.body})  # uvicorn drops it for HEAD
