"""What providers tell us after sending, as plain values. Parsing and verification only: no policy here."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

MAX_ROW_ID = 2**63 - 1  # ids are BIGINT: a larger number names no row and must never reach a query


class EventKind(StrEnum):
    PROCESSED = "processed"
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    BOUNCE = "bounce"  # hard: the address does not exist
    BLOCKED = "blocked"  # soft: refused for now (full mailbox, greylisting, reputation)
    DROPPED = "dropped"
    SPAMREPORT = "spamreport"
    UNSUBSCRIBE = "unsubscribe"
    GROUP_UNSUBSCRIBE = "group_unsubscribe"
    GROUP_RESUBSCRIBE = "group_resubscribe"
    OPEN = "open"
    CLICK = "click"
    OTHER = "other"


@dataclass(frozen=True)
class DeliveryEvent:
    provider: str
    event_id: str
    kind: EventKind
    email: str | None
    occurred_at: datetime
    send_id: int | None = None
    delivery_id: int | None = None
    message_id: str | None = None  # the provider's id of the message (SendGrid: X-Message-Id prefix)
    reason: str = ""
    status: str = ""  # enhanced status code, e.g. 5.1.1
    machine_open: bool = False
    payload: dict[str, Any] = field(default_factory=dict)
    # Why the event was refused at the edge (malformed); it is stored as rejected and never applied.
    rejected: str | None = None
