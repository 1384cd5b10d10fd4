"""Delivery Status Notifications (RFC 3464) and the less standard bounces some MTAs send, as DeliveryEvents.

The structured `message/delivery-status` part is read first (it carries the enhanced status code that decides
hard or soft); flufl.bounce's detectors cover the MTAs that send only prose.
"""

from __future__ import annotations

import email
import hashlib
import re
from dataclasses import dataclass
from email import policy
from email.message import Message
from typing import Any

from flufl.bounce import all_failures

from mailer.db import utcnow
from mailer.events import DeliveryEvent, EventKind

# Permanent codes that are in practice temporary: a full mailbox (5.2.2) or a message too big for it (5.2.3 is
# left hard: resending the same issue will not shrink it).
_SOFT_DESPITE_5XX = {"5.2.2"}
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")


@dataclass(frozen=True)
class Failure:
    recipient: str
    status: str
    action: str
    diagnostic: str

    @property
    def hard(self) -> bool:
        return self.status.startswith("5") and self.status not in _SOFT_DESPITE_5XX and self.action != "delayed"


def _delivery_status_blocks(message: Message) -> list[dict[str, str]]:
    blocks: list[dict[str, str]] = []
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        payload = part.get_payload()
        groups: list[Any] = payload if isinstance(payload, list) else []
        if not groups:  # some parsers leave it as text
            raw = part.get_payload(decode=True)
            text = raw if isinstance(raw, bytes) else b""
            groups = [email.message_from_bytes(chunk.strip().encode()) for chunk in
                      re.split(r"\r?\n\r?\n", text.decode("utf-8", "replace")) if chunk.strip()]
        for group in groups:
            fields = {k.lower(): str(v) for k, v in group.items()}
            if "final-recipient" in fields or "original-recipient" in fields:
                blocks.append(fields)
    return blocks


def _address(field: str) -> str:
    value = field.split(";", 1)[-1].strip().strip("<>")
    return value.lower()


def failures(raw: bytes) -> list[Failure]:
    message = email.message_from_bytes(raw, policy=policy.compat32)
    found: dict[str, Failure] = {}
    for block in _delivery_status_blocks(message):
        action = block.get("action", "").strip().lower()
        if action not in ("failed", "delayed"):
            continue
        recipient = _address(block.get("final-recipient") or block.get("original-recipient", ""))
        status_match = _STATUS.search(block.get("status", ""))
        status = status_match.group(0) if status_match else ("5.0.0" if action == "failed" else "4.0.0")
        found[recipient] = Failure(recipient, status, action, block.get("diagnostic-code", "").strip()[:500])
    if not found:
        temporary, permanent = all_failures(message)
        body = str(message.get_payload(decode=False))
        status_match = _STATUS.search(body)
        for address in permanent:
            text = address.decode() if isinstance(address, bytes) else str(address)
            status = status_match.group(0) if status_match and status_match.group(1) == "5" else "5.0.0"
            found[text.lower()] = Failure(text.lower(), status, "failed", "")
        for address in temporary:
            text = address.decode() if isinstance(address, bytes) else str(address)
            found.setdefault(text.lower(), Failure(text.lower(), "4.0.0", "delayed", ""))
    return list(found.values())


def dsn_events(raw: bytes, delivery_id: int | None) -> list[DeliveryEvent]:
    """One event per failed recipient of a DSN; `delivery_id` comes from the VERP address it was sent to."""
    message_id = email.message_from_bytes(raw, policy=policy.compat32).get("Message-ID", "")
    events = []
    for failure in failures(raw):
        digest = hashlib.sha256(f"{message_id}|{failure.recipient}|{len(raw)}".encode()).hexdigest()[:40]
        events.append(DeliveryEvent(
            provider="smtp", event_id=f"dsn-{digest}", kind=EventKind.BOUNCE if failure.hard else EventKind.BLOCKED,
            email=failure.recipient, occurred_at=utcnow(), delivery_id=delivery_id,
            reason=failure.diagnostic, status=failure.status,
            payload={"status": failure.status, "action": failure.action, "diagnostic": failure.diagnostic}))
    return events
