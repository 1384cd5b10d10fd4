"""Signed, purpose-bound, expiring tokens for the links we mail (confirm, unsubscribe, preferences).

A token carries only ids. The purpose is part of the signing salt, so a confirm token is simply an invalid
unsubscribe token, and a token names exactly one subscriber (and list), so it cannot touch anyone else.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner

from mailer.settings import Settings, get_settings


class Purpose(StrEnum):
    CONFIRM = "confirm"
    UNSUBSCRIBE = "unsubscribe"
    PREFERENCES = "preferences"


class TokenError(Exception):
    """The link cannot be used. ``expired`` tells the page to offer a fresh link rather than call it forged."""

    def __init__(self, message: str, *, expired: bool = False, subscriber_id: int | None = None,
                 list_id: int | None = None) -> None:
        super().__init__(message)
        self.expired = expired
        self.subscriber_id = subscriber_id
        self.list_id = list_id


@dataclass(frozen=True)
class TokenData:
    purpose: Purpose
    subscriber_id: int
    list_id: int | None


@lru_cache(maxsize=16)
def _signer(purpose: Purpose, secret: str) -> TimestampSigner:
    # One signer per purpose (the purpose is the salt). A send signs two links per recipient, so this stays a
    # plain HMAC over a few bytes: no serializer, no compression.
    return TimestampSigner(secret, salt=f"newsletter.{purpose.value}")


def _max_age(purpose: Purpose, settings: Settings) -> int:
    days = settings.confirm_token_max_age_days if purpose is Purpose.CONFIRM else settings.token_max_age_days
    return days * 86400


def _ids(value: bytes | str) -> tuple[int, int | None] | None:
    text = value.decode() if isinstance(value, bytes) else value
    parts = text.split("-")
    if not 1 <= len(parts) <= 2 or not all(p.isdigit() and len(p) < 19 for p in parts):
        return None
    return int(parts[0]), (int(parts[1]) if len(parts) == 2 else None)


def make_token(purpose: Purpose, subscriber_id: int, list_id: int | None = None,
               settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    value = str(subscriber_id) if list_id is None else f"{subscriber_id}-{list_id}"
    return _signer(purpose, settings.secret).sign(value).decode()


def read_token(purpose: Purpose, token: str, settings: Settings | None = None) -> TokenData:
    settings = settings or get_settings()
    try:
        value = _signer(purpose, settings.secret).unsign(token, max_age=_max_age(purpose, settings))
    except SignatureExpired as exc:
        ids = _ids(exc.payload) if exc.payload is not None else None
        raise TokenError("This link has expired.", expired=True, subscriber_id=ids[0] if ids else None,
                         list_id=ids[1] if ids else None) from exc
    except BadSignature as exc:
        raise TokenError("This link is not valid.") from exc
    ids = _ids(value)
    if ids is None:
        raise TokenError("This link is not valid.")
    return TokenData(purpose, ids[0], ids[1])


def link(purpose: Purpose, subscriber_id: int, list_id: int | None = None, settings: Settings | None = None) -> str:
    """The absolute URL mailed to a subscriber for this purpose."""
    settings = settings or get_settings()
    return f"{settings.base_url.rstrip('/')}/{purpose.value}/{make_token(purpose, subscriber_id, list_id, settings)}"
