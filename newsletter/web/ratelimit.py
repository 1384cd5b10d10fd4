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
# Two limits in one round trip: count KEYS[1]; count KEYS[2] only while KEYS[1] is within ARGV[2] (a client over
# its own limit cannot spend other keys' allowance either). Returns both counts (0 = not counted).
_COUNT_BOTH = _COUNT_FUNCTION + """
local first = count(KEYS[1])
if first > tonumber(ARGV[2]) then return {first, 0} end
return {first, count(KEYS[2])}
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
            self._count_both_script = self._redis.register_script(_COUNT_BOTH)
            self._count_all_script = self._redis.register_script(_COUNT_ALL)
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
        counted_requests = [request for request in requests if request]
        pipe = self._redis.pipeline(transaction=False)
        for request in counted_requests:
            if len(request) == 1:
                self._count_script(keys=[f"nl:rl:{request[0][0]}"], args=[window_s], client=pipe)
            else:
                (first, first_limit), (second, _) = request
                self._count_both_script(keys=[f"nl:rl:{first}", f"nl:rl:{second}"], args=[window_s, first_limit],
                                        client=pipe)
        replies = iter(pipe.execute() if counted_requests else [])
        answers = []
        for request in requests:
            if not request:
                answers.append(True)
                continue
            counted = next(replies)
            counts = [int(counted)] if len(request) == 1 else [int(n) for n in counted]
            answers.append(all(0 < count <= limit for count, (_, limit) in zip(counts, request, strict=True)))
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
