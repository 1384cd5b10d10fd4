"""The admin, the API and the CLI answer the same questions through the same named queries (subscribers.queries,
worker.reports), so they show the same numbers; the dashboard counts every list in one scan; ids no row can have
(beyond BIGINT) are "not found", never a server error."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from mailer.db import session_scope
from newsletter.auth import create_api_token, create_user
from newsletter.cli import app as cli_app
from newsletter.models import Role
from newsletter.web.app import create_app
from newsletter.web.ratelimit import reset
from subscribers import mailing_lists, service
from subscribers.models import ConsentSource, SuppressionReason
from tests.support.audience import EXAMPLE, make_audience

PASSWORD = "correct horse battery staple"
HUGE = 99_999_999_999_999_999_999  # an int FastAPI accepts that no BIGINT column can hold


@pytest.fixture
def clients(db_url: str) -> tuple[TestClient, TestClient]:
    """An admin signed in to the pages, and the same admin's API client. Lists: weekly (from make_audience: 5
    confirmed, 3 pending, 3 unsubscribed, 3 suppressed), other (2 confirmed, 1 unsubscribed) and empty."""
    reset()
    make_audience(5)
    with session_scope() as session:
        admin = create_user(session, "admin@example.com", PASSWORD, Role.ADMIN)
        token = create_api_token(session, admin, "t")
        other = mailing_lists.create_list(session, "other", "Other", double_opt_in=False)
        mailing_lists.create_list(session, "empty", "Empty")
        for n in range(3):
            service.subscribe(session, other, f"other{n}@example.org", source=ConsentSource.ADMIN)
        leaver = service.subscribe(session, other, "leaver@example.org", source=ConsentSource.ADMIN).subscription
        assert leaver is not None
        service.unsubscribe(session, leaver.subscriber_id, other.id, source=ConsentSource.ADMIN)
        service.suppress(session, "other2@example.org", SuppressionReason.MANUAL, source=ConsentSource.ADMIN)
    page = TestClient(create_app())
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.get("/admin/login").text).group(1)  # type: ignore[union-attr]
    signed_in = page.post("/admin/login", data={"email": "admin@example.com", "password": PASSWORD,
                                                "csrf_token": csrf}, follow_redirects=False)
    assert signed_in.status_code == 303
    return page, TestClient(create_app(), headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def statements() -> Iterator[list[str]]:
    """Every SQL statement sent to any database while the test runs."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    yield seen
    event.remove(Engine, "before_cursor_execute", record)


def table_rows(output: str) -> list[list[str]]:
    """The cells of each row of a table the CLI printed (a row's wrapped continuation lines left out)."""
    rows = [[cell.strip() for cell in line.strip().strip("│").split("│")] for line in output.splitlines()
            if line.strip().startswith("│")]
    return [row for row in rows if row[0]]


def dashboard_counts(html: str) -> dict[str, tuple[int, int, int]]:
    cards = re.findall(r'/admin/lists/(\w+)">[^<]*</a></div>\s*<div class="stat">([\d,]+)</div>\s*'
                       r'<div class="muted">confirmed · (\d+) pending · (\d+) unsubscribed', html)
    return {slug: (int(c.replace(",", "")), int(p), int(u)) for slug, c, p, u in cards}


def test_list_counts_agree_and_take_one_scan(clients: tuple[TestClient, TestClient], statements: list[str]) -> None:
    page, api = clients
    expected = {"weekly": (8, 3, 3), "other": (3, 0, 1), "empty": (0, 0, 0)}  # suppression does not unsubscribe
    statements.clear()
    dashboard = page.get("/admin")
    assert dashboard.status_code == 200
    counting = [s for s in statements if "subscriptions" in s and "count(" in s.lower()]
    assert len(counting) == 1, counting  # one GROUP BY for all three lists, not one per list
    assert dashboard_counts(dashboard.text) == expected
    from_api = {row["slug"]: (row["counts"]["confirmed"], row["counts"]["pending"], row["counts"]["unsubscribed"])
                for row in api.get("/api/v1/lists").json()}
    assert from_api == expected
    assert [row["slug"] for row in api.get("/api/v1/lists").json()] == ["empty", "other", "weekly"]
    assert api.get("/api/v1/lists/empty").json()["counts"] == {"pending": 0, "confirmed": 0, "unsubscribed": 0}
    listed = CliRunner().invoke(cli_app, ["lists", "ls"])
    assert listed.exit_code == 0, listed.output
    assert {row[0]: (int(row[2]), int(row[3]), int(row[4])) for row in table_rows(listed.output)} == expected


def test_search_and_suppressions_agree(clients: tuple[TestClient, TestClient]) -> None:
    page, api = clients
    shown = re.findall(r'/admin/subscribers/\d+">([^<]+)</a>', page.get("/admin/subscribers?list=other").text)
    assert shown == ["other0@example.org", "other1@example.org", "other2@example.org", "leaver@example.org"]
    cli = CliRunner().invoke(cli_app, ["subscribers", "ls", "--list", "other"])
    assert cli.exit_code == 0 and re.findall(r"\S+@example\.org", cli.output) == shown
    unknown = CliRunner().invoke(cli_app, ["subscribers", "ls", "--list", "nope"])
    assert unknown.exit_code == 1 and "No list called 'nope'" in unknown.output
    left = CliRunner().invoke(cli_app, ["subscribers", "ls", "--status", "unsubscribed", "--search", "LEAVER"])
    assert re.findall(r"\S+@example\.org", left.output) == ["leaver@example.org"]
    assert "other:unsubscribed" in left.output
    suppressed = ["other2@example.org", "s2@example.com", "s1@example.com", "s0@example.com"]  # newest first
    assert api.get("/api/v1/suppressions").json() == suppressed
    assert re.findall(r"<tr><td>([^<]+)</td>", page.get("/admin/suppressions").text) == suppressed
    assert re.findall(r"\S+@example\.\w+", CliRunner().invoke(cli_app, ["suppressions", "ls"]).output) == suppressed


def test_send_figures_agree(clients: tuple[TestClient, TestClient]) -> None:
    page, api = clients
    issue_id = api.post("/api/v1/issues", json={"markdown": EXAMPLE.read_text()}).json()["id"]
    sent = api.post("/api/v1/sends", json={"issue_id": issue_id, "list": "weekly"}).json()
    assert sent["status"] == "done" and sent["counters"]["sent"] == sent["counters"]["planned"] == 5
    progress = page.get(f"/admin/sends/{sent['id']}/progress.json").json()
    assert progress == {"status": "done", "reason": "", **sent["counters"]}
    assert 'id="count-sent" data-count="sent">5<' in page.get(f"/admin/sends/{sent['id']}").text
    listed = CliRunner().invoke(cli_app, ["sends"])
    assert [row[:1] + row[2:8] for row in table_rows(listed.output)] == [
        [str(sent["id"]), "weekly", "done", "5", "5", "0", "0"]]
    shown = CliRunner().invoke(cli_app, ["sends", "show", str(sent["id"])])
    assert shown.exit_code == 0 and re.search(r"sent\s+5\n", shown.output) and re.search(r"delivered\s+0", shown.output)
    assert "#" + str(sent["id"]) in page.get("/admin").text


@pytest.mark.parametrize("path", [f"/admin/subscribers/{HUGE}", f"/admin/sends/{HUGE}", f"/admin/issues/{HUGE}",
                                  f"/admin/sends/{HUGE}/progress.json", f"/admin/import/{HUGE}/report"])
def test_ids_beyond_bigint_are_not_found(clients: tuple[TestClient, TestClient], path: str) -> None:
    page, _api = clients
    assert page.get(path).status_code == 404


def test_keyset_cursor_beyond_bigint_is_an_empty_page(clients: tuple[TestClient, TestClient]) -> None:
    page, _api = clients
    response = page.get(f"/admin/subscribers?after={HUGE}")
    assert response.status_code == 200 and "Nobody matches." in response.text


@pytest.mark.parametrize("list_id", ["abc", "-1", str(HUGE), "999999"])
def test_forged_list_id_in_a_subscriber_action_changes_nothing(clients: tuple[TestClient, TestClient],
                                                               list_id: str) -> None:
    page, api = clients
    leaver = next(r for r in api.get("/api/v1/lists").json() if r["slug"] == "other")["counts"]
    path = re.search(r'href="(/admin/subscribers/\d+)">leaver@', page.get("/admin/subscribers?q=leaver").text)
    assert path is not None
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.get(path.group(1)).text).group(1)  # type: ignore[union-attr]
    answer = page.post(f"{path.group(1)}/action", data={"csrf_token": csrf, "action": "resubscribe",
                                                        "list_id": list_id}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].startswith(path.group(1))
    assert next(r for r in api.get("/api/v1/lists").json() if r["slug"] == "other")["counts"] == leaver
