"""Templates are read from disk again only in development: a deployed server does not stat every template a page
is made of on every request."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from mailer.db import session_scope
from mailer.settings import reset_settings
from newsletter.web.app import create_app
from newsletter.web.templating import configure_templates
from subscribers import mailing_lists


@pytest.fixture
def stats(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    with session_scope() as session:
        mailing_lists.create_list(session, "weekly", "Digital Digest Weekly")
    seen: list[str] = []
    real = os.path.getmtime

    def counting(path: str) -> float:
        seen.append(str(path))
        return real(path)

    monkeypatch.setattr(os.path, "getmtime", counting)
    yield seen
    configure_templates(development=True)  # the module-wide environment, as the next test expects it


def _second_page_stats(seen: list[str]) -> list[str]:
    client = TestClient(create_app(), base_url="https://news.example.com")
    assert client.get("/lists/weekly/subscribe").status_code == 200  # compiles and caches the templates
    seen.clear()
    assert client.get("/lists/weekly/subscribe").status_code == 200
    return [path for path in seen if path.endswith(".html")]


def test_development_rereads_changed_templates(stats: list[str]) -> None:
    assert _second_page_stats(stats)  # subscribe.html and base.html, checked for changes


def test_production_does_not_stat_templates_per_request(stats: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_ENV", "production")
    monkeypatch.setenv("NEWSLETTER_BASE_URL", "https://news.example.com")
    reset_settings()
    assert _second_page_stats(stats) == []
