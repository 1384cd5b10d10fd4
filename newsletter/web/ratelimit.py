"""Fixed-window rate limits shared by all web processes (Redis) or kept in-process when there is no Redis.

A window starts at a key's first attempt, in both stores. (Windows aligned to the clock let a burst straddle a
boundary at twice the limit, and made the same sequence of attempts pass or fail by the second it ran at.)

Used to stop subscription bombing (per IP and per address) and password guessing (per client address and account
pair, with a looser cap per client address).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import redis

from mailer.settings import get_settings

# Count, and start the window at the first attempt. A key found without a TTL (it cannot be made here, but would
# otherwise refuse forever) gets one.
_COUNT_FUNCTION = """
local function count(key)
  local n = redis.call('INCR', key)
  if n == 1 or redis.call('TTL', key) < 0 then redis.call('EXPIRE', key, ARGV[1]) end
  return n
end
"""
_COUNT = _COUNT_FUNCTION + "return count(KEYS[1])\n"
# Requests of one or two limits each (a sign-up counts its client, then its address), a whole group in one call:
# KEYS are every request's keys in order, ARGV[1] the window, then "<number of keys>:<limit of the first>" per
# request. A request's second key is counted only while its first is within its limit (a client over its own
# limit cannot spend other keys' allowance either); 0 = not counted. One command per group: a pipeline of a
# script call per request cost ~0.1 ms of Python a request to pack (bench/web.py).
_COUNT_GROUP = _COUNT_FUNCTION + """
local counts, k = {}, 1
for i = 2, #ARGV do
  local size, first_limit = string.match(ARGV[i], '^(%d+):(%d+)$')
  size, first_limit = tonumber(size), tonumber(first_limit)
  local first = count(KEYS[k])
  counts[k] = first
  for j = 1, size - 1 do
    if first > first_limit then counts[k + j] = 0 else counts[k + j] = count(KEYS[k + j]) end
  end
  k = k + size
end
return counts
"""
# Every key at once, atomically (login throttles count a pair and an address together). Returns the counts.
_COUNT_ALL = _COUNT_FUNCTION + """
local counts = {}
for i, key in ipairs(KEYS) do counts[i] = count(key) end
return counts
"""
# Refund into the window still open, if any: never create a key, never extend one.
_REFUND = """
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 0 then return redis.call('DECR', KEYS[1]) end
return 0
"""


class RateLimiter:
    def __init__(self, redis_url: str | None) -> None:
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=2) if redis_url else None
        if self._redis is not None:
            self._count_script = self._redis.register_script(_COUNT)
            self._refund_script = self._redis.register_script(_REFUND)
            self._count_all_script = self._redis.register_script(_COUNT_ALL)
            self._count_group_script = self._redis.register_script(_COUNT_GROUP)
        self._local: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, limit: int, window_s: int) -> bool:
        """Count one attempt; True while the key is within `limit` attempts in the current window."""
        return self.count(key, limit, window_s).allowed

    def count(self, key: str, limit: int, window_s: int) -> Counted:
        """Count one attempt and say whether it is within `limit`; what it returns can be refunded."""
        if limit <= 0:
            return Counted(True, "")
        if self._redis is not None:
            bucket = f"nl:rl:{key}"
            count = int(self._count_script(keys=[bucket], args=[window_s]))
            return Counted(count <= limit, bucket)
        with self._lock:
            return self._count_local(key, limit, window_s, time.monotonic())

    def count_together(self, keys: Sequence[tuple[str, int]], window_s: int) -> list[Counted]:
        """Count one attempt against each (key, limit) at once: no other attempt is counted in between, so attempts
        racing each other all see consistent counts. (Counted one after the other, an attempt could get the first
        count of one key and, after a burst of others, the last of the next, and be refused by both sides.)"""
        if self._redis is None:
            with self._lock:
                now = time.monotonic()
                return [self._count_local(key, limit, window_s, now) if limit > 0 else Counted(True, "")
                        for key, limit in keys]
        buckets = [f"nl:rl:{key}" for key, limit in keys if limit > 0]
        counts = iter(self._count_all_script(keys=buckets, args=[window_s]) if buckets else ())
        return [Counted(int(next(counts)) <= limit, f"nl:rl:{key}") if limit > 0 else Counted(True, "")
                for key, limit in keys]

    def _count_local(self, key: str, limit: int, window_s: int, now: float) -> Counted:
        """The in-process count (the caller holds the lock)."""
        count, start = self._local.get(key, (0, now))
        if now - start >= window_s:
            count, start = 0, now
        count += 1
        self._local[key] = (count, start)
        if len(self._local) > 100_000:  # keep memory bounded under a flood of distinct keys
            self._local = {k: v for k, v in self._local.items() if now - v[1] < window_s}
        return Counted(count <= limit, key, start)

    def hit_both(self, first: str, first_limit: int, second: str, second_limit: int, window_s: int) -> bool:
        """hit(first), then hit(second) only if the first was within its limit; True when both were. One Redis
        round trip instead of two (a sign-up counts its client and its address)."""
        return self.hit_many([[(first, first_limit), (second, second_limit)]], window_s)[0]

    def hit_many(self, requests: Sequence[Sequence[tuple[str, int]]], window_s: int) -> list[bool]:
        """For each request, hit its one key, or both of its two as `hit_both` does; all in one Redis round trip
        (a group of concurrent sign-ups, newsletter/web/intake.py). True where the request was within its limits."""
        if self._redis is None or any(limit <= 0 or len(request) > 2 for request in requests for _, limit in request):
            return [self._hit_all(request, window_s) for request in requests]
        counted = [request for request in requests if request]
        keys = [f"nl:rl:{key}" for request in counted for key, _ in request]
        shapes = [str(len(request)) + ":" + str(request[0][1]) for request in counted]
        counts = iter(self._count_group_script(keys=keys, args=[window_s, *shapes]) if counted else ())
        answers = []
        for request in requests:
            within = True
            for _, limit in request:
                count = int(next(counts))
                within = within and 0 < count <= limit
            answers.append(within)
        return answers

    def _hit_all(self, request: Sequence[tuple[str, int]], window_s: int) -> bool:
        """Each key in turn, stopping at the first over its limit (the rule of hit_both, for any number)."""
        return all(self.hit(key, limit, window_s) for key, limit in request)

    def refund(self, counted: Counted) -> None:
        """Take back an attempt that turned out not to count (a successful sign-in). Counting first and refunding
        after, rather than checking first and counting failures after, keeps parallel guesses within the limit."""
        if not counted.bucket:
            return
        if self._redis is not None:
            self._refund_script(keys=[counted.bucket])
            return
        with self._lock:
            count, start = self._local.get(counted.bucket, (0, 0.0))
            if start == counted.started and count > 0:  # the same window: a new one owes nothing
                self._local[counted.bucket] = (count - 1, start)


@dataclass(frozen=True)
class Counted:
    allowed: bool
    bucket: str
    started: float = 0.0


LOGIN_WINDOW_S = 900
ADDRESS_FACTOR = 3  # one client address may fail this many times the per-account limit, across all accounts


class LoginThrottle:
    """Password guessing is limited per (client address, account) pair, so a guesser elsewhere cannot lock the
    owner out, and per client address across accounts, so one address cannot spray many accounts. Only failures
    count: a correct password refunds its attempt."""

    def __init__(self, client_address: str, email: str, limit: int) -> None:
        account = hashlib.sha256(email.encode()).hexdigest()[:32]  # bounded keys, and no addresses in Redis
        self._keys = [(f"login:pair:{client_address}:{account}", limit),
                      (f"login:addr:{client_address}", limit * ADDRESS_FACTOR)]
        self._counted: list[Counted] = []

    def allowed(self) -> bool:
        """Counts this attempt against both limits; False when either is spent."""
        self._counted = limiter().count_together(self._keys, LOGIN_WINDOW_S)
        return all(counted.allowed for counted in self._counted)

    def succeeded(self) -> None:
        for counted in self._counted:
            limiter().refund(counted)
        self._counted = []


@lru_cache(maxsize=4)
def _limiter(redis_url: str | None) -> RateLimiter:
    return RateLimiter(redis_url)


def limiter() -> RateLimiter:
    return _limiter(get_settings().redis_url)


def reset() -> None:
    _limiter.cache_clear()
