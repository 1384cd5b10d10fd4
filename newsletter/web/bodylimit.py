"""A ceiling on request bodies, enforced before any route (and so before authentication) sees them.

FastAPI reads a JSON body before it resolves the dependencies that authenticate, so without this an anonymous client
could make the server buffer a body of any size just to be told 401. The middleware refuses a declared
Content-Length over the limit at once, and counts the bytes as they stream in, so a chunked body or a
Content-Length that lies is cut off at the limit too. Either way the answer is 413 and the connection's remaining
input is never read into memory.

Limits: small for JSON and forms (``NEWSLETTER_MAX_BODY_BYTES``), the CSV upload route larger
(``NEWSLETTER_IMPORT_MAX_UPLOAD_BYTES``), provider webhooks their own (``NEWSLETTER_WEBHOOK_MAX_BODY_BYTES``).
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailer.settings import Settings, get_settings

CSV_UPLOAD_PATH = "/admin/import"


class BodyTooLarge(Exception):
    """Raised into the route reading the body; the middleware answers 413 in its place."""


def body_limit(path: str, settings: Settings) -> int:
    if path == CSV_UPLOAD_PATH:
        return settings.import_max_upload_bytes
    if path.startswith("/webhooks/"):
        return settings.webhook_max_body_bytes
    return settings.max_body_bytes


def too_large(limit: int) -> tuple[Message, Message]:
    body = f"Request body too large: the limit here is {limit:,} bytes.".encode()
    return ({"type": "http.response.start", "status": 413,
             "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                         (b"content-length", str(len(body)).encode()), (b"connection", b"close")]},
            {"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, limit_for: Callable[[str, Settings], int] = body_limit) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"], get_settings())
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            for message in too_large(limit):  # refused unread: nothing of the body is taken in
                await send(message)
            return
        received = 0
        exceeded = started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                raise BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                return  # whatever the route makes of a body it could not finish reading, the answer is 413
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except BodyTooLarge:
            pass
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            for message in too_large(limit):
                await send(message)
