"""VERP return paths: `bounces+<token>@<bounce domain>`, so a bounce names the delivery it is about.

The token is the delivery id plus a short HMAC, so nobody can forge a bounce that suppresses someone else.
Only [a-z0-9] are used: local parts survive case-folding MTAs that way.
"""

from __future__ import annotations

import hmac
import re

from mailer.keyed_hash import keyed_hash
from mailer.settings import Settings, get_settings

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_PATTERN = re.compile(r"^bounces\+([0-9a-z]+)-([0-9a-z]{10})@", re.I)


def _base36(number: int) -> str:
    digits = ""
    while True:
        number, rest = divmod(number, 36)
        digits = _ALPHABET[rest] + digits
        if number == 0:
            return digits


def _mac(delivery: str, secret: str) -> str:
    digest = keyed_hash(secret.encode(), "sha256").digest(f"verp:{delivery}".encode())
    return _base36(int.from_bytes(digest[:7], "big")).rjust(10, "0")[-10:]


def bounce_domain(settings: Settings) -> str:
    return settings.bounce_domain or settings.mail_domain


def verp_address(delivery_id: int, settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    delivery = _base36(delivery_id)
    return f"bounces+{delivery}-{_mac(delivery, settings.secret)}@{bounce_domain(settings)}"


def read_verp(address: str, settings: Settings | None = None) -> int | None:
    """The delivery id of a genuine VERP address, or None for anything else (including forgeries)."""
    settings = settings or get_settings()
    match = _PATTERN.match(address.strip().strip("<>"))
    if match is None:
        return None
    delivery, mac = match.group(1).lower(), match.group(2).lower()
    if not hmac.compare_digest(mac, _mac(delivery, settings.secret)):
        return None
    return int(delivery, 36)
