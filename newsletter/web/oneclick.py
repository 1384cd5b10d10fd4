"""RFC 8058 one-click unsubscribes, answered before routing.

A mailbox provider sends `POST /unsubscribe/{token}` with the body `List-Unsubscribe=One-Click` when someone presses
its "Unsubscribe" button, and may replay a day's worth at once. The answer is two words of plain text, so this
needs none of the app's routing, dependencies, templates or cookies: routing and the framework cost more than the
rest of the request together (bench/web.py). ASGI middleware, outermost (beside tracking.TrackingFastPath), it
answers exactly that form, urlencoded; anything else (the unsubscribe page's own button, whose answer is a page, a
multipart one-click) goes on to the app, with the body it read.

The write itself is the app's: `one_click` (also what the route calls for a multipart one-click), grouped with the
concurrent ones by intake.LEAVES, answered once committed and once no batch in flight can still hand them the
issue.
"""

from __future__ import annotations

import secrets
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailer.settings import get_settings
from newsletter.web import intake
from newsletter.web.bodylimit import body_limit, too_large
from newsletter.web.security_headers import is_https, raw_security_headers
from subscribers.tokens import Purpose, TokenError, read_token

PREFIX = "/unsubscribe/"
FORM = b"application/x-www-form-urlencoded"


async def one_click(token: str, ip: str | None, user_agent: str | None, *, scope_all: bool = False) -> tuple[int, str]:
    """Unsubscribe the link's owner (from the link's list, or every list); the status and text to answer."""
    try:
        data = read_token(Purpose.UNSUBSCRIBE, token)
    except TokenError as exc:
        return (410 if exc.expired else 400), str(exc)
    await intake.unsubscribe(data.subscriber_id, None if scope_all else data.list_id, method="one-click", ip=ip,
                             user_agent=user_agent)
    return 200, "Unsubscribed."


class OneClickFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        limit = body_limit(scope["path"], get_settings())
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            for message in too_large(limit):  # refused unread
                await send(message)
            return
        try:
            body = await _read(receive, limit)
        except ClientGone:  # before its request was whole: nothing was done, and nobody is left to answer
            return
        if body is None:
            for message in too_large(limit):
                await send(message)
            return
        fields = parse_qs(body.decode("latin-1")) if headers.get(b"content-type", b"").startswith(FORM) else {}
        if fields.get("List-Unsubscribe") != ["One-Click"] or fields.get("scope"):
            await self.app(scope, _replay(body, receive), send)
            return
        client = scope.get("client")
        agent = headers.get(b"user-agent")
        status, text = await one_click(scope["path"][len(PREFIX):], client[0] if client else None,
                                       agent.decode("latin-1") if agent is not None else None)
        content = text.encode()
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(content)).encode()),
            *raw_security_headers(secrets.token_urlsafe(16), is_https())]})
        await send({"type": "http.response.body", "body": content})


class ClientGone(Exception):
    pass


async def _read(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None past `limit` bytes; ClientGone when the client hung up first."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the app the body already read, then whatever the connection says next."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
