"""CSRF protection by double submit: a random cookie echoed in a hidden form field, compared in constant time.

Stateless, so it works for anonymous public forms as well as signed-in admin forms. The RFC 8058 one-click POST is
exempt by design (mail clients send no cookies); that route calls nothing here.
"""

from __future__ import annotations

import hmac
import secrets

from fastapi import HTTPException, Request
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.responses import Response

from mailer.settings import get_settings

COOKIE = "nl_csrf"
FIELD = "csrf_token"
HEADER = "X-CSRF-Token"


class CSRFCookieMiddleware(BaseHTTPMiddleware):
    """Make sure every browser has a CSRF cookie, and expose its value to templates as request.state.csrf_token."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        token = request.cookies.get(COOKIE)
        fresh = not token or len(token) < 32
        if fresh:
            token = secrets.token_urlsafe(32)
        request.state.csrf_token = token
        response = await call_next(request)
        if fresh:
            settings = get_settings()
            secure = settings.session_cookie_secure
            if secure is None:
                secure = settings.base_url.startswith("https://")
            response.set_cookie(COOKIE, str(token), httponly=True, samesite="lax", secure=secure, path="/")
        return response


async def verify_csrf(request: Request) -> None:
    """FastAPI dependency for state-changing form posts: 403 unless the form (or header) echoes the cookie."""
    cookie = request.cookies.get(COOKIE, "")
    sent = request.headers.get(HEADER, "")
    if not sent:
        form = await request.form()
        value = form.get(FIELD, "")
        sent = value if isinstance(value, str) else ""
    if not cookie or not sent or not hmac.compare_digest(cookie, sent):
        raise HTTPException(status_code=403, detail="The form expired or was sent from another site. "
                                                    "Reload the page and try again.")
