"""The embedded default transport: each message becomes an .eml file you can open, grep or serve.

Files are written to a temporary name and renamed, so a reader never sees half a message.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from mailer.message import build_message
from mailer.transports.base import Content, Recipient, Result


class OutboxTransport:
    name = "outbox"
    max_batch = 1000

    def __init__(self, directory: Path, message_id_domain: str) -> None:
        self.directory = directory
        self.message_id_domain = message_id_domain
        directory.mkdir(parents=True, exist_ok=True)

    def send(self, content: Content, recipients: Sequence[Recipient]) -> list[Result]:
        results = []
        for recipient in recipients:
            message = build_message(content, recipient, message_id_domain=self.message_id_domain)
            message_id = str(message["Message-ID"]).strip("<>")
            stem = f"{content.send_id or 0}-{recipient.delivery_id or 0}-{message_id.split('@')[0]}"
            if recipient.return_path:
                message["X-Envelope-From"] = recipient.return_path
            tmp = self.directory / f".{stem}.tmp"
            tmp.write_bytes(message.as_bytes())
            os.replace(tmp, self.directory / f"{stem}.eml")
            results.append(Result(recipient=recipient, ok=True, message_id=message_id))
        return results

    def close(self) -> None:
        return None
