"""SendGrid's Signed Event Webhook: verify the ECDSA signature on the exact raw body, then parse the events.

The SDK helper checks the signature only; replay protection (a fresh timestamp) is ours.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import math
import reprlib
import time
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from sendgrid.helpers.eventwebhook import EventWebhook

from mailer.events import MAX_ROW_ID, DeliveryEvent, EventKind

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


class WebhookRefused(Exception):
    """The request is not provably from SendGrid (or is stale); answered with 403 and nothing stored."""


def verify(raw: bytes, signature: str | None, timestamp: str | None, public_key: str, *, max_age_s: int,
           now: float | None = None) -> None:
    if not signature or not timestamp:
        raise WebhookRefused("missing signature or timestamp header")
    try:
        stamp = int(timestamp)
    except ValueError as exc:
        raise WebhookRefused("timestamp is not a number") from exc
    now = time.time() if now is None else now
    if abs(now - stamp) > max_age_s:
        raise WebhookRefused("timestamp outside the accepted window (replay?)")
    try:
        payload = raw.decode("utf-8")
        helper = EventWebhook(public_key)
        valid = helper.verify_signature(payload, signature, timestamp)
    except (UnicodeDecodeError, binascii.Error, ValueError, UnsupportedAlgorithm) as exc:
        raise WebhookRefused(f"unverifiable request: {exc.__class__.__name__}") from exc
    if not valid:
        raise WebhookRefused("signature does not match")


_KINDS = {k.value: k for k in EventKind}
EARLIEST = 946684800  # 2000-01-01: no event of ours is older
FUTURE_SLACK_S = 86400
MAX_TEXT = 1000
# The fields SendGrid documents, with the type each must have; anything else is dropped, not stored. Fields that
# identify something are refused when too long or not plain text (cutting an address makes it someone else's);
# free text is cut to size and its control characters blanked.
_KEY_FIELDS = {"email": 320, "event": 64, "sg_event_id": 200, "sg_message_id": 300, "type": 32, "status": 32,
               "smtp-id": 300, "ip": 64, "bounce_classification": 64, "send_id": 20, "delivery_id": 20}
_FREE_TEXT = {"reason": MAX_TEXT, "response": MAX_TEXT, "url": 2000, "useragent": 500,
              "marketing_campaign_name": 200}
_CONTROL = {code: " " for code in [*range(32), 127]}
_NUMBER_FIELDS = ("timestamp", "send_id", "delivery_id", "attempt", "asm_group_id", "tls", "cert_err",
                  "sg_machine_open", "marketing_campaign_id")


_PREVIEW = reprlib.Repr()  # a bounded, depth-limited picture of a refused event (never json.dumps: it recurses)
_PREVIEW.maxlevel, _PREVIEW.maxstring, _PREVIEW.maxother, _PREVIEW.maxdict, _PREVIEW.maxlist = 3, 200, 200, 30, 10


class Malformed(ValueError):
    """One event fails validation: it is stored as rejected with this message, and the batch goes on."""


def _kind(item: dict[str, Any]) -> EventKind:
    name = str(item.get("event", ""))
    if name == "bounce":
        return EventKind.BLOCKED if item.get("type") == "blocked" else EventKind.BOUNCE
    return _KINDS.get(name, EventKind.OTHER)


def _id(item: dict[str, Any], key: str) -> int | None:
    """A row id from custom_args (strings, as SendGrid returns them) or a number; in BIGINT range, or refused."""
    value = item.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise Malformed(f"{key} must be an integer")
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit() and len(value) <= 19):
            raise Malformed(f"{key} must be an integer")
        value = int(value)
    if not 1 <= value <= MAX_ROW_ID:
        raise Malformed(f"{key} out of range")
    return value


def _timestamp(item: dict[str, Any], now: float) -> datetime:
    value = item.get("timestamp")
    if value is None:
        return datetime.fromtimestamp(int(now), UTC)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Malformed("timestamp must be a number")
    if not (math.isfinite(value) and EARLIEST <= value <= now + FUTURE_SLACK_S):
        raise Malformed("timestamp out of range")
    return datetime.fromtimestamp(int(value), UTC)


def _clean(item: dict[str, Any]) -> dict[str, Any]:
    """The documented fields only, each of the right type and size: what is stored is flat and bounded."""
    clean: dict[str, Any] = {}
    for key, value in item.items():
        if key in _KEY_FIELDS and isinstance(value, str):
            if len(value) > _KEY_FIELDS[key] or not value.isprintable():
                raise Malformed(f"{key} is too long or not plain text")
            clean[key] = value
        elif key in _FREE_TEXT and isinstance(value, str):
            clean[key] = value[:_FREE_TEXT[key]].translate(_CONTROL)
        elif key in _NUMBER_FIELDS and isinstance(value, int | float | bool):
            if isinstance(value, float) and not math.isfinite(value):
                raise Malformed(f"{key} is not a finite number")
            clean[key] = value
        elif key == "category" and isinstance(value, str | list):
            names = [value] if isinstance(value, str) else value
            if not all(isinstance(name, str) for name in names):
                raise Malformed("category must be text")
            clean[key] = [name[:100].translate(_CONTROL) for name in names[:10]]
        elif key in _KEY_FIELDS or key in _FREE_TEXT or key in _NUMBER_FIELDS or key == "category":
            raise Malformed(f"{key} has the wrong type ({type(value).__name__})")
    return clean


def _event(item: Any, now: float) -> DeliveryEvent:
    if not isinstance(item, dict):
        raise Malformed("an event must be a JSON object")
    event_id = item.get("sg_event_id")
    if not isinstance(event_id, str) or not 1 <= len(event_id) <= 200 or not event_id.isprintable():
        raise Malformed("sg_event_id missing or not a short text")
    clean = _clean(item)
    if not isinstance(item.get("event"), str):
        raise Malformed("event must be text")
    email = clean.get("email", "").strip().lower() or None
    if email is not None and (email.count("@") != 1 or len(email) > 320 or not email.isprintable()):
        raise Malformed("email is not an address")
    message_id = clean.get("sg_message_id", "").split(".")[0] or None
    return DeliveryEvent(
        provider="sendgrid", event_id=event_id, kind=_kind(clean), email=email, occurred_at=_timestamp(item, now),
        send_id=_id(item, "send_id"), delivery_id=_id(item, "delivery_id"), message_id=message_id,
        reason=clean.get("reason") or clean.get("response") or "", status=clean.get("status", ""),
        machine_open=clean.get("sg_machine_open") is True, payload=clean)


def _rejected(item: Any, index: int, error: str, now: float) -> DeliveryEvent:
    """A refused event, kept for a person: its own id when it has a usable one, else a digest of what came."""
    shown = _PREVIEW.repr(item)
    event_id = item.get("sg_event_id") if isinstance(item, dict) else None
    if not (isinstance(event_id, str) and 1 <= len(event_id) <= 200 and event_id.isprintable()):
        event_id = "invalid-" + hashlib.sha256(f"{index}|{shown}".encode()).hexdigest()[:40]
    return DeliveryEvent(provider="sendgrid", event_id=event_id, kind=EventKind.OTHER, email=None,
                         occurred_at=datetime.fromtimestamp(int(now), UTC), payload={"received": shown[:4000]},
                         rejected=error[:500])


def unreadable(raw: bytes, error: str) -> DeliveryEvent:
    """A signed body that holds no readable array, as one rejected event (its digest is its id: a retry of the
    same body is stored once)."""
    return DeliveryEvent(provider="sendgrid", event_id="body-" + hashlib.sha256(raw).hexdigest()[:40],
                         kind=EventKind.OTHER, email=None, occurred_at=datetime.now(UTC),
                         payload={"received": raw[:4000].decode("utf-8", "replace")}, rejected=error[:500])


def parse(raw: bytes, *, now: float | None = None) -> list[DeliveryEvent]:
    """Events of one webhook POST (a JSON array). Each entry is validated on its own: a malformed one comes back as
    a rejected event (stored for a person, never applied) and costs the others nothing."""
    now = time.time() if now is None else now
    try:
        data = json.loads(raw)
    except RecursionError as exc:  # nesting deeper than the parser goes: not one event can be read
        raise ValueError("the JSON is nested too deeply") from exc
    if not isinstance(data, list):
        raise ValueError("expected a JSON array of events")
    events = []
    for index, item in enumerate(data):
        try:
            events.append(_event(item, now))
        except (Malformed, RecursionError) as exc:
            events.append(_rejected(item, index, str(exc) or "nested too deeply", now))
    return events
