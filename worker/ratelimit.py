"""A token bucket in Redis shared by every worker on every host, one bucket per transport.

Celery's own rate_limit counts per worker process, so N workers would send N times the agreed rate. Here one Lua
script refills and takes tokens atomically; a worker that cannot take its batch's tokens sleeps for exactly the
time the bucket needs to refill.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import redis

from mailer.settings import get_settings

_TAKE = """
local key = KEYS[1]
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local state = redis.call('HMGET', key, 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or t
tokens = math.min(burst, tokens + (t - at) * rate)
local wait = 0
if tokens >= want then
  tokens = tokens - want
else
  wait = (want - tokens) / rate
end
redis.call('HSET', key, 'tokens', tokens, 'at', t)
redis.call('EXPIRE', key, math.ceil(burst / rate) + 60)
return tostring(wait)
"""


@dataclass
class TokenBucket:
    client: redis.Redis
    name: str
    rate: float  # tokens per second
    burst: int

    def __post_init__(self) -> None:
        self._script = self.client.register_script(_TAKE)

    def try_take(self, count: int) -> float:
        """Take `count` tokens if available; otherwise take nothing and return the seconds to wait."""
        return float(self._script(keys=[f"nl:bucket:{self.name}"], args=[self.rate, self.burst, count]))

    def take(self, count: int, *, max_wait_s: float = 600.0) -> float:
        """Block until `count` tokens are taken; returns the seconds spent waiting.

        A batch larger than the burst is taken in burst-sized parts so it can never wait forever.
        """
        waited = 0.0
        remaining = count
        while remaining > 0:
            part = min(remaining, self.burst)
            wait = self.try_take(part)
            if wait <= 0:
                remaining -= part
                continue
            if waited + wait > max_wait_s:
                raise TimeoutError(f"rate limit {self.name}: waited {waited:.0f}s")
            time.sleep(wait)
            waited += wait
        return waited


@lru_cache(maxsize=4)
def _bucket(redis_url: str, name: str, rate: float, burst: int) -> TokenBucket:
    return TokenBucket(redis.Redis.from_url(redis_url), name, rate, burst)


def throttle_for(transport: str) -> Callable[[int], None] | None:
    """The shared bucket of a transport as a callable that blocks until `count` messages may go (None: no limit).

    The bucket is cached per process: its Redis connection pool outlives a batch.
    """
    settings = get_settings()
    if settings.rate_per_second <= 0 or not settings.redis_url:
        return None
    bucket = _bucket(settings.redis_url, transport, settings.rate_per_second, settings.rate_burst)

    def take(count: int) -> None:
        bucket.take(count)

    return take
