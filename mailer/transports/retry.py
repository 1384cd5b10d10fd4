"""Exponential backoff with full jitter, honouring a server's Retry-After when it gives one."""

from __future__ import annotations

import random
import time
from email.utils import parsedate_to_datetime


def backoff_delay(attempt: int, base: float = 0.5, cap: float = 30.0) -> float:
    """Full jitter (AWS architecture blog): spreads retries of many workers instead of synchronising them."""
    return random.uniform(0, min(cap, base * 2 ** attempt))


def retry_after_seconds(headers: dict[str, str] | None, now: float | None = None) -> float | None:
    """Seconds to wait from Retry-After (delta or HTTP date) or X-RateLimit-Reset (epoch seconds)."""
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    now = time.time() if now is None else now
    value = lowered.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(value).timestamp() - now)
            except (TypeError, ValueError):
                pass
    reset = lowered.get("x-ratelimit-reset")
    if reset:
        try:
            return max(0.0, float(reset) - now)
        except ValueError:
            return None
    return None
