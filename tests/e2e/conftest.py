"""Browser journeys run against the real app under uvicorn, with links in emails pointing at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mailer.settings import reset_settings
from newsletter.web.ratelimit import reset
from tests.support.server import serve
from tests.support.workers import free_port


@pytest.fixture
def site(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    port = free_port()
    monkeypatch.setenv("NEWSLETTER_BASE_URL", f"http://127.0.0.1:{port}")
    reset_settings()
    reset()
    with serve(port) as url:
        yield url
