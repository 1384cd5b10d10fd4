"""Counters of a send, derived from the ledger: its rows and its batch rows (worker/batches.py), never kept as
separate numbers that could drift, except for a compacted send, whose ledger rows are gone and whose figures were
stored once, when it was compacted."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from worker import batches
from worker.models import Send


def compacted_figures(session: Session, send_id: int, part: str) -> Any:
    """One part ("counters", "figures", "report") of a compacted send's stored figures; None for any other send.
    Every reader of the ledger asks this first (worker/retention.py)."""
    stored = session.scalar(select(Send.figures).where(Send.id == send_id, Send.compacted_at.is_not(None)))
    return stored.get(part) if stored else None


def send_counters(session: Session, send_id: int) -> dict[str, int]:
    stored: dict[str, int] | None = compacted_figures(session, send_id, "counters")
    if stored is not None:
        return dict(stored)
    counts = {status.value: n for status, n in batches.counts(session, send_id).items()}
    counts["planned"] = sum(counts.values())
    counts["done"] = counts["sent"] + counts["failed"] + counts["skipped"]
    return counts
