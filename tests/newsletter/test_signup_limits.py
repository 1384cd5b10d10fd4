"""A sign-up's two rate limits (its client, its address) counted in one Redis round trip, with the rules of two
separate counts: the address is counted only for a client within its limit, an invalid address still costs its
client an attempt, and the in-process limiter (no Redis) behaves the same."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis as redis_lib
from fastapi.testclient import TestClient

from mailer.db import session_scope
from mailer.settings import Settings
from newsletter.web import ratelimit
from newsletter.web.app import create_app
from newsletter.web.ratelimit import RateLimiter
from subscribers import mailing_lists


@pytest.fixture(params=["redis", "in-process"])
def limiter_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    yield str(request.getfixturevalue("redis_url")) if request.param == "redis" else None


def test_the_second_key_is_counted_only_within_the_first_limit(limiter_url: str | None) -> None:
    limiter = RateLimiter(limiter_url)
    answers = [limiter.hit_both("ip", 2, "addr", 10, 3600) for _ in range(4)]
    assert answers == [True, True, False, False]
    # "addr" was counted twice, not four times: 8 of its 10 remain.
    assert [limiter.hit("addr", 10, 3600) for _ in range(9)] == [True] * 8 + [False]


def test_either_limit_refuses(limiter_url: str | None) -> None:
    limiter = RateLimiter(limiter_url)
    assert [limiter.hit_both("ip", 10, "addr", 1, 3600) for _ in range(2)] == [True, False]
    assert limiter.hit_both("ip", 10, "other", 1, 3600) is True  # the client is still within its own limit
    assert limiter.hit_both("off", 0, "addr2", 1, 3600) is True  # a limit of 0 is no limit
    assert limiter.hit_both("ip2", 1, "addr3", 0, 3600) is True and limiter.hit_both("ip2", 1, "x", 0, 3600) is False


def test_a_group_counts_as_its_requests_would_one_by_one(limiter_url: str | None) -> None:
    """A group of concurrent sign-ups is counted in one call; each request gets the answer it would have got alone,
    in order: one-key and two-key requests mixed, a first key over its limit sparing the second, repeats within the
    group counted as repeats."""
    group = [[("ip:a", 2), ("addr:x", 5)], [("ip:a", 2), ("addr:y", 5)], [("ip:a", 2), ("addr:z", 5)],
             [("ip:b", 3)], [], [("ip:c", 5), ("addr:x", 5)], [("ip:c", 5), ("addr:x", 5)]]
    alone = RateLimiter(None)  # the reference: each request in turn, by the rule of hit_both
    expected = [all(alone.hit(key, limit, 3600) for key, limit in request) for request in group]
    assert expected == [True, True, False, True, True, True, True]
    limiter = RateLimiter(limiter_url)
    assert limiter.hit_many(group, 3600) == expected
    # addr:z was not counted (its client was over), addr:x three times: 2 of its 5 remain.
    assert [limiter.hit("addr:z", 1, 3600), limiter.hit("addr:x", 5, 3600), limiter.hit("addr:x", 5, 3600),
            limiter.hit("addr:x", 5, 3600)] == [True, True, True, False]


def test_a_large_group_is_one_redis_call(redis_url: str) -> None:
    limiter = RateLimiter(redis_url)
    calls: list[object] = []
    script = limiter._count_group_script
    limiter._count_group_script = lambda **kwargs: calls.append(kwargs) or script(**kwargs)  # type: ignore[assignment]
    answers = limiter.hit_many([[("ip:many", 150), (f"addr:{n}", 1)] for n in range(200)], 3600)
    assert answers == [True] * 150 + [False] * 50 and len(calls) == 1


def test_both_keys_get_their_window_in_redis(redis_url: str) -> None:
    RateLimiter(redis_url).hit_both("ip", 5, "addr", 5, 120)
    store = redis_lib.Redis.from_url(redis_url)
    assert 0 < store.ttl("nl:rl:ip") <= 120 and 0 < store.ttl("nl:rl:addr") <= 120
    store.close()


@pytest.fixture
def crowd(pg_url: str, redis_url: str, settings: Settings) -> Iterator[tuple[TestClient, Settings]]:
    settings.redis_url = redis_url
    ratelimit.reset()
    with session_scope() as session:
        mailing_lists.create_list(session, "weekly", "Digital Digest Weekly")
    yield TestClient(create_app()), settings
    ratelimit.reset()


def _embed(client: TestClient, email: str) -> int:
    client.cookies.clear()
    return client.post("/lists/weekly/embed", data={"email": email, "name": ""},
                       headers={"Origin": "https://blog.example.org"}, follow_redirects=False).status_code


def test_a_client_over_its_limit_spends_nobody_elses_allowance(crowd: tuple[TestClient, Settings],
                                                                redis_url: str) -> None:
    client, settings = crowd
    settings.subscribe_rate_per_ip, settings.subscribe_rate_per_email = 2, 3
    assert [_embed(client, "victim@example.com") for _ in range(5)] == [200, 200, 429, 429, 429]
    store = redis_lib.Redis.from_url(redis_url)
    assert int(store.get("nl:rl:sub:addr:victim@example.com") or 0) == 2
    store.close()
    elsewhere = TestClient(client.app, client=("203.0.113.7", 50000))
    assert _embed(elsewhere, "victim@example.com") == 200  # the address's third attempt of three


def test_invalid_addresses_cost_their_client_attempts(crowd: tuple[TestClient, Settings]) -> None:
    client, settings = crowd
    settings.subscribe_rate_per_ip = 2
    assert [_embed(client, "not-an-address") for _ in range(3)] == [400, 400, 429]
    assert _embed(client, "valid@example.com") == 429
