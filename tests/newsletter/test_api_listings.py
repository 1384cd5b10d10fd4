"""The API lists what automation needs to page through: subscribers (filters, keyset cursor), issues and sends with
their figures. A walk visits everyone exactly once, whatever the page size; hostile cursors answer cleanly."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from mailer.db import session_scope
from newsletter.auth import create_api_token, create_user
from newsletter.models import Role
from newsletter.web.app import create_app
from subscribers import mailing_lists, service
from subscribers.models import ConsentSource
from tests.mailer.test_issue import EXAMPLE


@pytest.fixture
def api(db_url: str) -> TestClient:
    with session_scope() as session:
        token = create_api_token(session, create_user(session, "s@example.com", "correct horse battery", Role.STAFF),
                                 "t")
        weekly = mailing_lists.create_list(session, "weekly", "Weekly", double_opt_in=False)
        other = mailing_lists.create_list(session, "other", "Other", double_opt_in=False)
        for n in range(23):
            service.subscribe(session, weekly if n % 2 else other, f"p{n:02d}@example.org", f"Person {n}",
                              source=ConsentSource.ADMIN)
        gone = service.subscribe(session, weekly, "gone@example.org", source=ConsentSource.ADMIN).subscription
        assert gone is not None
        service.unsubscribe(session, gone.subscriber_id, weekly.id, source=ConsentSource.ADMIN)
    return TestClient(create_app(), headers={"Authorization": f"Bearer {token}"})


def walk(api: TestClient, **params: object) -> list[str]:
    seen, after = [], 0
    for _ in range(100):
        page = api.get("/api/v1/subscribers", params={**params, "after": after}).json()
        seen += [item["email"] for item in page["items"]]
        if page["next_after"] is None:
            return seen
        after = page["next_after"]
    raise AssertionError("the walk never ended")


def test_subscriber_walk_visits_everyone_once_with_filters(api: TestClient) -> None:
    everyone = walk(api, limit=5)
    assert len(everyone) == len(set(everyone)) == 24
    assert walk(api, limit=500) == everyone  # the page size changes nothing
    weekly_confirmed = walk(api, list="weekly", status="confirmed", limit=4)
    assert len(weekly_confirmed) == 11 and "gone@example.org" not in weekly_confirmed
    assert walk(api, list="weekly", status="unsubscribed") == ["gone@example.org"]
    assert walk(api, search="p07@example.org") == ["p07@example.org"]
    assert walk(api, list="nosuchlist") == []
    for bad in ({"after": -1}, {"after": "x"}, {"limit": 0}, {"limit": 10**6}, {"status": "evil"}):
        response = api.get("/api/v1/subscribers", params=bad)
        assert response.status_code == 422 and response.json()["error"]
    assert api.get("/api/v1/subscribers", params={"after": 2**80}).json() == {"items": [], "next_after": None}


def test_issues_and_sends_with_figures(api: TestClient) -> None:
    issue = api.post("/api/v1/issues", json={"markdown": EXAMPLE.read_text()}).json()
    first = api.post("/api/v1/sends", json={"issue_id": issue["id"], "list": "weekly"}).json()
    second = api.post("/api/v1/sends", json={"issue_id": issue["id"], "list": "other"}).json()
    assert [i["id"] for i in api.get("/api/v1/issues").json()] == [issue["id"]]
    sends = api.get("/api/v1/sends").json()
    assert [s["id"] for s in sends] == [second["id"], first["id"]]
    assert sends[1]["list"] == "weekly" and sends[1]["counters"]["sent"] == 11 and sends[1]["figures"]["sent"] == 11
    assert [s["id"] for s in api.get("/api/v1/sends", params={"before": second["id"]}).json()] == [first["id"]]
    assert api.get("/api/v1/sends", params={"before": 2**80}).status_code == 200
