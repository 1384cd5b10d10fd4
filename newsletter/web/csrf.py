"""CSRF protection by double submit: a random cookie echoed in a hidden form field, compared in constant time.

Stateless, so it works for anonymous public forms as well as signed-in admin forms. The RFC 8058 one-click POST is
exempt by design (mail clients send no cookies); that route calls nothing here.
"""

from __future__ import annotations

import hmac
import secrets

from fastapi import HTTPException, Request
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailer.settings import get_settings
from newsletter.web.forms import read_form

COOKIE = "nl_csrf"
FIELD = "csrf_token"
HEADER = "X-CSRF-Token"


class CSRFCookieMiddleware:
    """Make sure every browser has a CSRF cookie, and expose its value to templates as request.state.csrf_token.

    Plain ASGI rather than BaseHTTPMiddleware: that one runs the app in a second task and makes it wait until the
    client has received the whole response, which kept each request's dependencies (its database session) alive for
    as long as a slow or vanished client took, and re-raised a client's disconnect as an application error.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = _cookie(scope)
        fresh = not sent or len(sent) < 32
        token = secrets.token_urlsafe(32) if fresh or sent is None else sent
        scope.setdefault("state", {})["csrf_token"] = token

        async def send_with_cookie(message: Message) -> None:
            if fresh and message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (b"set-cookie", cookie_header(token))]
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def cookie_header(token: str) -> bytes:
    """The Set-Cookie value for a token (URL-safe base64: nothing to quote), as Starlette's `set_cookie` writes it;
    written here, since building a Response and a SimpleCookie for it cost ~20 µs of each fresh visitor's request."""
    return f"{COOKIE}={token}; HttpOnly; Path=/; SameSite=lax{'; Secure' if _secure() else ''}".encode("latin-1")


def _cookie(scope: Scope) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == b"cookie":
            return cookie_parser(value.decode("latin-1")).get(COOKIE)
    return None


def _secure() -> bool:
    settings = get_settings()
    secure = settings.session_cookie_secure
    return settings.base_url.startswith("https://") if secure is None else secure


async def verify_csrf(request: Request) -> None:
    """FastAPI dependency for state-changing form posts: 403 unless the form (or header) echoes the cookie."""
    cookie = request.cookies.get(COOKIE, "")
    sent = request.headers.get(HEADER, "")
    if not sent:
        form = await read_form(request)
        value = form.get(FIELD, "")
        sent = value if isinstance(value, str) else ""
    if not cookie or not sent or not hmac.compare_digest(cookie, sent):
        raise HTTPException(status_code=403, detail="The form expired or was sent from another site. "
                                                    "Reload the page and try again.")
