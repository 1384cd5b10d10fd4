"""Delivery Status Notifications (RFC 3464) and the less standard bounces some MTAs send, as DeliveryEvents.

The structured `message/delivery-status` part is read first (it carries the enhanced status code that decides
hard or soft); flufl.bounce's detectors cover the MTAs that send only prose.
"""

from __future__ import annotations

import email
import hashlib
import re
import uuid
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


def failure_event(failure: Failure, *, event_id: str, delivery_id: int | None, address: str) -> DeliveryEvent:
    """The event for one failure, hard or soft by the one classification (Failure.hard) every SMTP path uses.

    `address` is the address of the delivery the failure is about, which may differ from what the report names
    (forwarding): the report's own claims go into the payload only.
    """
    return DeliveryEvent(
        provider="smtp", event_id=event_id, kind=EventKind.BOUNCE if failure.hard else EventKind.BLOCKED,
        email=address, occurred_at=utcnow(), delivery_id=delivery_id, reason=failure.diagnostic,
        status=failure.status,
        payload={"status": failure.status, "action": failure.action, "diagnostic": failure.diagnostic,
                 "named": failure.recipient})


def dsn_event(raw: bytes, delivery_id: int, address: str) -> DeliveryEvent | None:
    """The one event a DSN may cause: about the delivery its VERP address names, and that delivery's address only.

    A report that lists other recipients cannot reach them (nobody can forge a VERP token for their deliveries);
    its verdict is the failure that names the delivery's address, else the worst one it reports. None when the
    message reports no failure at all (an auto-reply, say).
    """
    found = failures(raw)
    if not found:
        return None
    failure = next((f for f in found if f.recipient == address), None) or max(found, key=lambda f: f.hard)
    message_id = email.message_from_bytes(raw, policy=policy.compat32).get("Message-ID", "")
    digest = hashlib.sha256(f"{message_id}|{delivery_id}|{len(raw)}".encode()).hexdigest()[:40]
    return failure_event(failure, event_id=f"dsn-{digest}", delivery_id=delivery_id, address=address)


def refusal_event(delivery_id: int, address: str, reply: str) -> DeliveryEvent:
    """A permanent refusal at RCPT ("550 5.1.1 user unknown") as the event a DSN with that status would give."""
    match = _STATUS.search(reply)
    status = match.group(0) if match and match.group(1) == "5" else "5.0.0"
    failure = Failure(address, status, "failed", reply.strip()[:500])
    return failure_event(failure, event_id=f"rcpt-{delivery_id}-{uuid.uuid4().hex}", delivery_id=delivery_id,
                         address=address)
