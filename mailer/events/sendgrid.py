"""SendGrid's Signed Event Webhook: verify the ECDSA signature on the exact raw body, then parse the events.

The SDK helper checks the signature only; replay protection (a fresh timestamp) is ours.
"""

from __future__ import annotations

import binascii
import json
import time
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from sendgrid.helpers.eventwebhook import EventWebhook

from mailer.events import DeliveryEvent, EventKind

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


def _kind(item: dict[str, Any]) -> EventKind:
    name = str(item.get("event", ""))
    if name == "bounce":
        return EventKind.BLOCKED if item.get("type") == "blocked" else EventKind.BOUNCE
    return _KINDS.get(name, EventKind.OTHER)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def parse(raw: bytes) -> list[DeliveryEvent]:
    """Events of one webhook POST (a JSON array). Malformed entries are skipped, not fatal."""
    data = json.loads(raw)
    if not isinstance(data, list):
        raise ValueError("expected a JSON array of events")
    events = []
    for item in data:
        if not isinstance(item, dict) or not item.get("sg_event_id"):
            continue
        timestamp = _int(item.get("timestamp")) or int(time.time())
        message_id = str(item.get("sg_message_id") or "").split(".")[0] or None
        email = str(item["email"]).strip().lower() if item.get("email") else None
        events.append(DeliveryEvent(
            provider="sendgrid", event_id=str(item["sg_event_id"])[:200], kind=_kind(item), email=email,
            occurred_at=datetime.fromtimestamp(timestamp, UTC), send_id=_int(item.get("send_id")),
            delivery_id=_int(item.get("delivery_id")), message_id=message_id,
            reason=str(item.get("reason") or item.get("response") or "")[:1000],
            status=str(item.get("status") or ""), machine_open=bool(item.get("sg_machine_open")), payload=item))
    return events
