"""Sign-in details that protect accounts: throttling shared through Redis, Secure cookies behind https, no open
redirect after sign-in, and a password change that signs old sessions out."""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import select

from mailer.db import session_scope
from newsletter.auth import create_user
from newsletter.models import Role, User
from newsletter.web.admin import auth as auth_pages
from newsletter.web.app import create_app
from newsletter.web.ratelimit import LoginThrottle, RateLimiter, reset

PASSWORD = "correct horse battery staple"


@pytest.fixture
def user(sqlite_url: str) -> str:
    reset()
    with session_scope() as session:
        create_user(session, "admin@example.com", PASSWORD, Role.ADMIN)
    return "admin@example.com"


def attempt(client: TestClient, password: str, next_path: str = "/admin", email: str = "admin@example.com") -> int:
    page = client.get("/admin/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    response = client.post("/admin/login", data={"email": email, "password": password, "csrf_token": token,
                                                 "next": next_path}, follow_redirects=False)
    return response.status_code


def test_throttle_is_shared_by_processes_through_redis(user: str, settings, redis_url: str) -> None:
    settings.redis_url = redis_url
    settings.login_attempts_per_window = 2
    reset()
    first, second = TestClient(create_app()), TestClient(create_app())  # two web processes, one Redis
    assert attempt(first, "wrong password 1") == 401
    assert attempt(second, "wrong password 2") == 401
    assert attempt(first, PASSWORD) == 429  # even the right password waits now: no oracle for the guesser
    keys = redis.Redis.from_url(redis_url).keys("nl:rl:login:*")
    account = hashlib.sha256(b"admin@example.com").hexdigest()[:32].encode()  # keys name no address
    assert any(b":pair:" in k and account in k for k in keys) and not any(b"@" in k for k in keys)
    assert attempt(second, PASSWORD, email="other@example.com") == 401  # another account is not locked


def test_secure_cookie_behind_https(user: str, settings) -> None:
    settings.base_url = "https://news.example.com"
    client = TestClient(create_app(), base_url="https://testserver")
    page = client.get("/admin/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    response = client.post("/admin/login", data={"email": user, "password": PASSWORD, "csrf_token": token},
                           follow_redirects=False)
    cookie = response.headers["set-cookie"].lower()
    assert response.status_code == 303 and "secure" in cookie and "httponly" in cookie and "samesite=lax" in cookie


@pytest.mark.parametrize("target", ["//evil.example/admin", "https://evil.example/", "/admin/lists"])
def test_no_open_redirect_after_sign_in(user: str, target: str) -> None:
    client = TestClient(create_app())
    page = client.get("/admin/login", params={"next": target})
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    response = client.post("/admin/login", data={"email": user, "password": PASSWORD, "csrf_token": token,
                                                 "next": target}, follow_redirects=False)
    assert response.headers["location"] == ("/admin/lists" if target == "/admin/lists" else "/admin")


def test_password_change_signs_old_sessions_out(user: str) -> None:
    client = TestClient(create_app())
    assert attempt(client, PASSWORD) == 303
    assert client.get("/admin", follow_redirects=False).status_code == 200
    with session_scope() as session:
        account = session.scalar(select(User))
        assert account is not None
        account.password_hash = PasswordHasher().hash("a brand new passphrase")
    assert client.get("/admin", follow_redirects=False).status_code == 303


@pytest.fixture(params=["in-process", "redis"])
def limiter_backend(request: pytest.FixtureRequest, settings) -> str:
    """The throttle on both of its stores: in-process (no broker) and Redis (shared by web processes)."""
    if request.param == "redis":
        settings.redis_url = request.getfixturevalue("redis_url")
    reset()
    return str(request.param)


def from_address(address: str) -> TestClient:
    return TestClient(create_app(), client=(address, 40000))


def test_guesser_elsewhere_cannot_lock_the_owner_out(user: str, settings, limiter_backend: str) -> None:
    settings.login_attempts_per_window = 3
    guesser = from_address("203.0.113.66")
    assert [attempt(guesser, f"guess number {n}") for n in range(4)] == [401, 401, 401, 429]
    assert attempt(guesser, PASSWORD) == 429  # no oracle for the guesser, even with the right password
    owner = from_address("198.51.100.7")
    assert attempt(owner, PASSWORD) == 303  # a correct password from a clean address still works
    assert attempt(from_address("198.51.100.8"), "owner mistyped it") == 401  # clean addresses keep their own tries


def test_successes_do_not_count(user: str, settings, limiter_backend: str) -> None:
    settings.login_attempts_per_window = 2
    owner = from_address("198.51.100.7")
    assert [attempt(owner, PASSWORD) for _ in range(7)] == [303] * 7
    assert [attempt(owner, "mistyped password") for _ in range(3)] == [401, 401, 429]


def test_one_address_cannot_spray_many_accounts(user: str, settings, limiter_backend: str) -> None:
    settings.login_attempts_per_window = 2  # per address: 3x across accounts
    sprayer = from_address("203.0.113.66")
    codes = [attempt(sprayer, "Winter2026!!", email=f"user{n}@example.com") for n in range(7)]
    assert codes == [401] * 6 + [429]
    assert attempt(sprayer, PASSWORD) == 429
    assert attempt(from_address("198.51.100.7"), PASSWORD) == 303


def test_parallel_guesses_stay_within_the_limit(user: str, settings, redis_url: str) -> None:
    """Counting before the password check (and refunding successes) means a burst of simultaneous guesses cannot
    all slip past a limit that is only checked."""
    settings.redis_url = redis_url
    settings.login_attempts_per_window = 3
    reset()
    clients = [from_address("203.0.113.66") for _ in range(12)]
    tokens = [re.search(r'name="csrf_token" value="([^"]+)"', c.get("/admin/login").text).group(1)  # type: ignore[union-attr]
              for c in clients]
    barrier = threading.Barrier(len(clients))

    def guess(index: int) -> int:
        barrier.wait()
        return clients[index].post("/admin/login", data={"email": user, "password": f"parallel guess {index}",
                                                         "csrf_token": tokens[index]}).status_code

    with ThreadPoolExecutor(len(clients)) as pool:
        codes = sorted(pool.map(guess, range(len(clients))))
    assert codes.count(401) == 3 and codes.count(429) == 9


def test_redis_window_starts_at_first_attempt_and_refunds_never_extend_it(redis_url: str) -> None:
    store = redis.Redis.from_url(redis_url)
    limiter = RateLimiter(redis_url)
    first = limiter.count("probe", 2, 900)
    assert first.allowed and store.ttl("nl:rl:probe") == 900  # no clock-aligned window: the whole 900 s
    store.expire("nl:rl:probe", 5)
    limiter.refund(first)
    assert store.ttl("nl:rl:probe") <= 5 and int(store.get("nl:rl:probe") or 0) == 0  # refunded, not extended
    limiter.refund(first)
    assert int(store.get("nl:rl:probe") or 0) == 0  # never below zero
    store.delete("nl:rl:probe")
    limiter.refund(first)
    assert not store.exists("nl:rl:probe")  # a refund never creates a key (it would have no TTL)
    store.set("nl:rl:stuck", 99)  # a key that somehow lost its TTL would refuse forever: the next count heals it
    assert not limiter.count("stuck", 2, 900).allowed and store.ttl("nl:rl:stuck") == 900


def test_the_password_check_runs_off_the_event_loop(user: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2 spends tens of ms of CPU on purpose: on the event loop, a flood of guesses would stall every other page
    of the process. The check runs in the thread pool, where no loop is running."""
    seen: list[bool] = []
    real = auth_pages.authenticate

    def watched(*args: object, **kwargs: object) -> object:
        try:
            asyncio.get_running_loop()
            seen.append(True)
        except RuntimeError:
            seen.append(False)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(auth_pages, "authenticate", watched)
    assert attempt(from_address("192.0.2.44"), "a wrong password") == 401
    assert attempt(from_address("192.0.2.45"), PASSWORD) == 303
    assert seen == [False, False]


def test_a_guess_is_counted_against_both_limits_at_once(redis_url: str, settings) -> None:
    """The pair and the address are counted in one Redis script. Counted one after the other, a guess could take the
    first count of its pair and, after a burst of other guesses, the tenth of its address: refused by both sides,
    so fewer than `limit` guesses got an answer (seen once in a full run of the parallel test above)."""
    settings.redis_url = redis_url
    reset()
    store = redis.Redis.from_url(redis_url)
    before = int(store.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))
    throttle = LoginThrottle("203.0.113.77", "someone@example.com", 3)
    assert throttle.allowed()
    after = int(store.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))
    assert after - before == 1  # both keys in one atomic call (a first call may add a SCRIPT LOAD, not an EVALSHA)
    assert sorted(int(store.get(key) or 0) for key in store.keys("nl:rl:login:*")) == [1, 1]

    gate = threading.Barrier(40)

    def guess(_: int) -> bool:
        gate.wait()
        return LoginThrottle("203.0.113.78", "victim@example.com", 3).allowed()

    with ThreadPoolExecutor(40) as pool:
        assert sum(pool.map(guess, range(40))) == 3
