"""Reading what the outbox transport wrote, as a subscriber's mail client would."""

from __future__ import annotations

import email
import re
from collections import Counter
from email import policy
from email.message import EmailMessage
from pathlib import Path

from mailer.settings import get_settings


def outbox_messages(directory: Path | None = None) -> list[EmailMessage]:
    folder = directory or get_settings().outbox_dir
    assert folder is not None
    if not folder.exists():
        return []
    files = sorted(folder.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns)
    return [email.message_from_bytes(p.read_bytes(), policy=policy.default) for p in files]  # type: ignore[misc]


def recipients_in_outbox(directory: Path | None = None) -> Counter[str]:
    """How many messages each address got."""
    return Counter(m["To"].addresses[0].addr_spec for m in outbox_messages(directory))


def messages_to(address: str, directory: Path | None = None) -> list[EmailMessage]:
    return [m for m in outbox_messages(directory) if m["To"].addresses[0].addr_spec == address]


def body_text(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def links(message: EmailMessage, path: str) -> list[str]:
    """Absolute links to `path` (e.g. "/confirm/") found in the text part."""
    return re.findall(rf"https?://[^\s>]+{re.escape(path)}[^\s>]+", body_text(message))
