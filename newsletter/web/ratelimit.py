"""Fixed-window rate limits shared by all web processes (Redis) or kept in-process when there is no Redis.

Used to stop subscription bombing (per IP and per address) and password guessing (per IP and account).
"""

from __future__ import annotations

import threading
import time
from functools import lru_cache

import redis

from mailer.settings import get_settings


class RateLimiter:
    def __init__(self, redis_url: str | None) -> None:
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=2) if redis_url else None
        self._local: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, limit: int, window_s: int) -> bool:
        """Count one attempt; True while the key is within `limit` attempts in the current window."""
        if limit <= 0:
            return True
        if self._redis is not None:
            bucket = f"nl:rl:{key}:{int(time.time() // window_s)}"
            pipe = self._redis.pipeline()
            pipe.incr(bucket)
            pipe.expire(bucket, window_s + 1)
            count = int(pipe.execute()[0])
            return count <= limit
        now = time.monotonic()
        with self._lock:
            count, start = self._local.get(key, (0, now))
            if now - start >= window_s:
                count, start = 0, now
            count += 1
            self._local[key] = (count, start)
            if len(self._local) > 100_000:  # keep memory bounded under a flood of distinct keys
                self._local = {k: v for k, v in self._local.items() if now - v[1] < window_s}
            return count <= limit


@lru_cache(maxsize=4)
def _limiter(redis_url: str | None) -> RateLimiter:
    return RateLimiter(redis_url)


def limiter() -> RateLimiter:
    return _limiter(get_settings().redis_url)


def reset() -> None:
    _limiter.cache_clear()
