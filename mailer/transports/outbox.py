"""The embedded default transport: each message becomes an .eml file you can open, grep or serve.

Files are written to a temporary name and renamed, so a reader never sees half a message.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from mailer.batch import Content, Recipient, Result
from mailer.message import encode_message


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
            data, message_id = encode_message(content, recipient, message_id_domain=self.message_id_domain)
            stem = f"{content.send_id or 0}-{recipient.delivery_id or 0}-{message_id.split('@')[0]}"
            if recipient.return_path:  # the envelope sender an MTA would have used, for people reading the file
                data = f"X-Envelope-From: <{recipient.return_path}>\r\n".encode() + data
            tmp = self.directory / f".{stem}.tmp"
            tmp.write_bytes(data)
            os.replace(tmp, self.directory / f"{stem}.eml")
            results.append(Result(recipient=recipient, ok=True, message_id=message_id))
        return results

    def close(self) -> None:
        return None
