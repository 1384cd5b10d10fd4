"""The small interface between the sending engine and a mail system (the values it carries: mailer.batch)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from mailer.batch import Content, Recipient, Result


class Transport(Protocol):
    name: str
    max_batch: int

    def send(self, content: Content, recipients: Sequence[Recipient]) -> list[Result]:
        """Send one batch; return one Result per recipient, in order, or raise TransportError for all of them."""
        ...

    def close(self) -> None: ...
