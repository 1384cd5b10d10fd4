"""Tokens are itsdangerous TimestampSigner tokens, signed by a faster path: the two must agree exactly."""

from __future__ import annotations

import pytest

from mailer.settings import get_settings
from subscribers import tokens
from subscribers.tokens import LinkMaker, Purpose, TokenError, link, make_token, read_token


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> int:
    now = 1_790_000_000
    monkeypatch.setattr(tokens.time, "time", lambda: float(now))
    monkeypatch.setattr("itsdangerous.timed.time.time", lambda: float(now))
    return now


@pytest.mark.parametrize("purpose", list(Purpose))
@pytest.mark.parametrize("ids", [(1, None), (123456789, 7), (2**40, 2**31)])
def test_fast_tokens_are_exactly_what_itsdangerous_signs(purpose: Purpose, ids: tuple[int, int | None],
                                                         frozen_clock: int) -> None:
    settings = get_settings()
    value = str(ids[0]) if ids[1] is None else f"{ids[0]}-{ids[1]}"
    expected = tokens._signer(purpose, settings.secret).sign(value).decode()
    assert make_token(purpose, *ids) == expected
    assert LinkMaker(purpose).token(*ids) == expected
    assert link(purpose, *ids) == f"{settings.base_url.rstrip('/')}/{purpose.value}/{expected}"


def test_batch_links_verify_and_stay_bound_to_purpose_and_ids() -> None:
    make = LinkMaker(Purpose.UNSUBSCRIBE)
    for subscriber_id in (1, 42, 99_999):
        token = make(subscriber_id, 3).rsplit("/", 1)[1]
        data = read_token(Purpose.UNSUBSCRIBE, token)
        assert (data.subscriber_id, data.list_id) == (subscriber_id, 3)
        with pytest.raises(TokenError):
            read_token(Purpose.PREFERENCES, token)
    forged = make(5, 3).rsplit("/", 1)[1].replace("5-3.", "6-3.", 1)
    with pytest.raises(TokenError, match="not valid"):
        read_token(Purpose.UNSUBSCRIBE, forged)


def test_a_token_signed_with_another_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    token = make_token(Purpose.UNSUBSCRIBE, 8, 1)
    monkeypatch.setattr(get_settings(), "secret_key", type(get_settings().secret_key)("another-secret-" * 4))
    with pytest.raises(TokenError):
        read_token(Purpose.UNSUBSCRIBE, token)
