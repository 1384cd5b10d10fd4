"""One-line messages after an admin action ("Saved", "Test sent to ..."), carried by the redirect.

The message travels in the redirect's ``?flash=`` parameter, so it has to be signed: otherwise anyone could mail a
staff member a link to a real admin page that shows a message of their choosing ("Your session expired, sign in
at ..."). A flash the app did not sign, or signed more than a few minutes ago, is simply not shown.
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import RedirectResponse
from itsdangerous import BadSignature, URLSafeTimedSerializer

from mailer.settings import get_settings

PARAM = "flash"
MAX_AGE_S = 600


@lru_cache(maxsize=4)
def _serializer(secret: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt="newsletter.flash")


def flash_url(path: str, message: str) -> str:
    """`path` with `message` signed into its query string (after the path's own query, if it has one)."""
    if not message:
        return path
    return f"{path}{'&' if '?' in path else '?'}{urlencode({PARAM: _serializer(get_settings().secret).dumps(message)})}"


def redirect_with_flash(path: str, message: str = "") -> RedirectResponse:
    return RedirectResponse(flash_url(path, message), status_code=303)


def read_flash(request: Request) -> str | None:
    """The message this request's URL carries, if the app signed it recently; anything else shows nothing."""
    token = request.query_params.get(PARAM)
    if not token:
        return None
    try:
        message = _serializer(get_settings().secret).loads(token, max_age=MAX_AGE_S)
    except BadSignature:
        return None
    return message if isinstance(message, str) else None
