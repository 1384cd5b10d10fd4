"""Signed, purpose-bound tokens for the links we mail (confirm, unsubscribe, preferences).

Only confirmation links expire: a confirmation proves that someone reads the mailbox now. Unsubscribe and preferences
links sit in inboxes and archives for years, and mailbox providers and anti-spam law expect them to work for as long
as we hold the address; they stop working when the subscriber is erased (the page then finds no one to act on).
A token carries only ids. The purpose is part of the signing salt, so a confirm token is simply an invalid
unsubscribe token, and a token names exactly one subscriber (and list), so it cannot touch anyone else.
"""

from __future__ import annotations

import base64
import hmac
import time
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner
from itsdangerous.encoding import base64_encode, int_to_bytes

from mailer.keyed_hash import keyed_hash
from mailer.settings import Settings, get_settings


class Purpose(StrEnum):
    CONFIRM = "confirm"
    UNSUBSCRIBE = "unsubscribe"
    PREFERENCES = "preferences"
    TRACK = "track"


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
    # One signer per purpose (the purpose is the salt): a confirm token is an invalid unsubscribe token.
    return TimestampSigner(secret, salt=f"newsletter.{purpose.value}")


@lru_cache(maxsize=16)
def _signing_key(purpose: Purpose, secret: str) -> bytes:
    """The HMAC key itsdangerous derives from the secret and salt (on every call; here once)."""
    return _signer(purpose, secret).derive_key()


def _stamp() -> str:
    return base64_encode(int_to_bytes(int(time.time()))).decode()


def _sign(key: bytes, value: str, stamp: str) -> str:
    """itsdangerous' TimestampSigner format, `value.stamp.mac`, with one C-level HMAC-SHA1: a send signs two links
    per recipient, and the general signer spends most of its time deriving the same key again."""
    signed = f"{value}.{stamp}"
    return f"{signed}.{base64_encode(keyed_hash(key, 'sha1').digest(signed.encode())).decode()}"


def _value(subscriber_id: int, list_id: int | None) -> str:
    return str(subscriber_id) if list_id is None else f"{subscriber_id}-{list_id}"


class LinkMaker:
    """Signed links of one purpose for a whole batch: the key is derived and the timestamp encoded once."""

    def __init__(self, purpose: Purpose, settings: Settings | None = None) -> None:
        settings = settings or get_settings()
        self._key = _signing_key(purpose, settings.secret)
        self._stamp = _stamp()
        self._prefix = f"{settings.base_url.rstrip('/')}/{purpose.value}/"

    def token(self, subscriber_id: int, list_id: int | None = None) -> str:
        return _sign(self._key, _value(subscriber_id, list_id), self._stamp)

    def __call__(self, subscriber_id: int, list_id: int | None = None) -> str:
        return self._prefix + self.token(subscriber_id, list_id)


def _max_age(purpose: Purpose, settings: Settings) -> int | None:
    """Seconds a link of this purpose stays valid; None: for as long as the address is on file."""
    return settings.confirm_token_max_age_days * 86400 if purpose is Purpose.CONFIRM else None


def _ids(value: bytes | str) -> tuple[int, int | None] | None:
    text = value.decode() if isinstance(value, bytes) else value
    parts = text.split("-")
    if not 1 <= len(parts) <= 2 or not all(p.isdigit() and len(p) < 19 for p in parts):
        return None
    return int(parts[0]), (int(parts[1]) if len(parts) == 2 else None)


def make_token(purpose: Purpose, subscriber_id: int, list_id: int | None = None,
               settings: Settings | None = None) -> str:
    return LinkMaker(purpose, settings).token(subscriber_id, list_id)


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
    return LinkMaker(purpose, settings)(subscriber_id, list_id)


# Tracking tokens -------------------------------------------------------------------------------------------------
# Every tracked link and the open pixel of one message carry the same token: which send and delivery it was, and
# whether to record (a subscriber who opted out still gets working links). They never expire: a link in a message
# must keep working for as long as the message exists. A truncated HMAC-SHA256 (96 bits) keeps the URL short; the
# token grants nothing but a redirect to a URL of that send's own message and one counted click.

_TRACK_MAC_BYTES = 12


@dataclass(frozen=True)
class TrackData:
    send_id: int
    delivery_id: int
    record: bool


class TrackTokens:
    """Tracking tokens for a batch: the key is derived once."""

    def __init__(self, settings: Settings | None = None) -> None:
        settings = settings or get_settings()
        self._mac = keyed_hash(_signing_key(Purpose.TRACK, settings.secret), "sha256")

    def __call__(self, send_id: int, delivery_id: int, record: bool = True) -> str:
        value = f"{send_id:x}.{delivery_id:x}.{1 if record else 0}"
        mac = self._mac.digest(value.encode())[:_TRACK_MAC_BYTES]
        return f"{value}.{base64.urlsafe_b64encode(mac).decode()}"

    def read(self, token: str) -> TrackData | None:
        """The token's ids, or None for anything not signed by us (never an exception: this is a public URL)."""
        parts = token.split(".")
        if len(parts) != 4 or len(token) > 80 or parts[2] not in ("0", "1"):
            return None
        value = ".".join(parts[:3])
        try:
            mac = base64.urlsafe_b64decode(parts[3].encode())
            send_id, delivery_id = int(parts[0], 16), int(parts[1], 16)
        except ValueError:
            return None
        expected = self._mac.digest(value.encode())[:_TRACK_MAC_BYTES]
        if not hmac.compare_digest(mac, expected) or not (0 < send_id < 2**62 and 0 < delivery_id < 2**62):
            return None
        return TrackData(send_id, delivery_id, parts[2] == "1")
