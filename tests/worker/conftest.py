"""Fixtures the worker's tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from mailer.settings import Settings
from tests.support.sendgrid_standin import API_KEY, SendGridStandIn


@pytest.fixture
def standin(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[SendGridStandIn]:
    """The SendGrid stand-in, running, with the settings pointed at it."""
    server = SendGridStandIn().start()
    monkeypatch.setattr(settings, "sendgrid_host", server.url)
    monkeypatch.setattr(settings, "sendgrid_api_key", SecretStr(API_KEY))
    yield server
    server.stop()
