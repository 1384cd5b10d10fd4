"""Signed, purpose-bound, expiring tokens for the links we mail (confirm, unsubscribe, preferences).

A token carries only ids. The purpose is part of the signing salt, so a confirm token is simply an invalid
unsubscribe token, and a token names exactly one subscriber (and list), so it cannot touch anyone else.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from mailer.settings import Settings, get_settings


class Purpose(StrEnum):
    CONFIRM = "confirm"
    UNSUBSCRIBE = "unsubscribe"
    PREFERENCES = "preferences"


class TokenError(Exception):
    """The link cannot be used. ``expired`` tells the page to offer a fresh link rather than call it forged."""

    def __init__(self, message: str, *, expired: bool = False, subscriber_id: int | None = None) -> None:
        super().__init__(message)
        self.expired = expired
        self.subscriber_id = subscriber_id


@dataclass(frozen=True)
class TokenData:
    purpose: Purpose
    subscriber_id: int
    list_id: int | None


def _serializer(purpose: Purpose, settings: Settings) -> URLSafeTimedSerializer:
    return _cached_serializer(purpose, settings.secret)


@lru_cache(maxsize=16)
def _cached_serializer(purpose: Purpose, secret: str) -> URLSafeTimedSerializer:
    # Building a serializer derives keys; a send makes two links per recipient, so build each once.
    return URLSafeTimedSerializer(secret, salt=f"newsletter.{purpose.value}")


def _max_age(purpose: Purpose, settings: Settings) -> int:
    days = settings.confirm_token_max_age_days if purpose is Purpose.CONFIRM else settings.token_max_age_days
    return days * 86400


def make_token(purpose: Purpose, subscriber_id: int, list_id: int | None = None,
               settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    payload = [subscriber_id] if list_id is None else [subscriber_id, list_id]
    return str(_serializer(purpose, settings).dumps(payload))


def read_token(purpose: Purpose, token: str, settings: Settings | None = None) -> TokenData:
    settings = settings or get_settings()
    serializer = _serializer(purpose, settings)
    try:
        payload = serializer.loads(token, max_age=_max_age(purpose, settings))
    except SignatureExpired as exc:
        ok, expired_payload = serializer.loads_unsafe(token)
        subscriber = expired_payload[0] if ok and isinstance(expired_payload, list) else None
        raise TokenError("This link has expired.", expired=True, subscriber_id=subscriber) from exc
    except BadSignature as exc:
        raise TokenError("This link is not valid.") from exc
    if not (isinstance(payload, list) and 1 <= len(payload) <= 2 and all(isinstance(i, int) for i in payload)):
        raise TokenError("This link is not valid.")
    return TokenData(purpose, payload[0], payload[1] if len(payload) == 2 else None)


def link(purpose: Purpose, subscriber_id: int, list_id: int | None = None, settings: Settings | None = None) -> str:
    """The absolute URL mailed to a subscriber for this purpose."""
    settings = settings or get_settings()
    return f"{settings.base_url.rstrip('/')}/{purpose.value}/{make_token(purpose, subscriber_id, list_id, settings)}"
