"""schemathesis generates requests from our OpenAPI document and finds no server errors."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from mailer.db import session_scope
from newsletter.auth import create_api_token, create_user
from newsletter.models import Role
from newsletter.web.api import api_app
from subscribers import mailing_lists

schema = schemathesis.openapi.from_asgi("/openapi.json", api_app)


@pytest.fixture
def token(sqlite_url: str) -> str:
    with session_scope() as session:
        admin = create_user(session, "fuzz@example.com", "correct horse battery staple", Role.ADMIN)
        mailing_lists.create_list(session, "weekly", "Weekly")
        return create_api_token(session, admin, "fuzz")


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: schemathesis.Case, token: str) -> None:
    response = case.call(headers={"Authorization": f"Bearer {token}"})
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
    if response.status_code >= 400 and response.status_code != 405:
        assert "error" in response.json(), response.text  # every error is a JSON object with a message
