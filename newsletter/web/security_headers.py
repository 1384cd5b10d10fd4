"""Security headers on every response, and the per-request nonce that lets our own inline scripts run.

The policy allows scripts only from our origin or carrying this response's nonce, so markup that slipped past
escaping cannot run. Styles may be inline: the admin pages use style attributes, and the issue previews are email
HTML, whose styles are inline by design (premailer). The previews are sandboxed ``srcdoc`` frames, which inherit
this policy: images from any https host (the issue's own images) and data: URIs are allowed for them. No page may
be framed by another site (clickjacking of the admin, of unsubscribe and preferences buttons). Referrers leave
our origin never: subscriber links carry signed tokens in their path. HSTS only when the public URL is https,
since it would lock a plain-http development install out of itself.
"""

from __future__ import annotations

import secrets

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailer.settings import get_settings

HSTS = "max-age=31536000"


def content_security_policy(nonce: str) -> str:
    return "; ".join([
        "default-src 'self'",
        f"script-src 'self' 'nonce-{nonce}'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' https: data:",
        "font-src 'self' https: data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ])


def security_headers(nonce: str, https: bool) -> list[tuple[str, str]]:
    """The headers every answer carries (the middleware adds those a route did not set itself)."""
    headers = [("Content-Security-Policy", content_security_policy(nonce)), ("X-Frame-Options", "DENY"),
               ("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "same-origin")]
    if https:
        headers.append(("Strict-Transport-Security", HSTS))
    return headers


_CSP_PARTS = content_security_policy("\x00").encode("latin-1").split(b"\x00")
_FIXED = [(name.lower().encode("latin-1"), value.encode("latin-1"))
          for name, value in security_headers("", False) if name != "Content-Security-Policy"]
_HSTS = (b"strict-transport-security", HSTS.encode("latin-1"))


def raw_security_headers(nonce: str, https: bool) -> list[tuple[bytes, bytes]]:
    """`security_headers` as an ASGI message carries them (lower-case names, bytes), built from parts encoded
    once: every answer of the app adds these."""
    headers = [(b"content-security-policy", nonce.encode("latin-1").join(_CSP_PARTS)), *_FIXED]
    if https:
        headers.append(_HSTS)
    return headers


def is_https() -> bool:
    return get_settings().base_url.lower().startswith("https://")


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(16)
        scope.setdefault("state", {})["csp_nonce"] = nonce  # request.state.csp_nonce, for templates
        https = is_https()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":  # a header the route set itself is kept
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers += [header for header in raw_security_headers(nonce, https) if header[0] not in present]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
