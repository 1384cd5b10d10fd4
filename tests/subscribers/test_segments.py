"""Segments on both databases: every operator against an audience whose answer is computed in Python, located
errors, hostile expressions that stay data, and sends to a segment (CLI and API) that plan exactly its members."""

from __future__ import annotations

import re
from collections import Counter
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from mailer.db import session_scope, utcnow
from mailer.store import save_issue
from newsletter.auth import create_api_token, create_user
from newsletter.cli import app as cli_app
from newsletter.models import Role
from newsletter.web.app import create_app
from subscribers import audience, mailing_lists, service
from subscribers.models import ConsentSource, Segment, Subscriber, Subscription
from subscribers.segments import SegmentError, compile_segment
from tests.support.audience import EXAMPLE, ROW_OF_PERSON
from tests.support.mailbox import outbox_messages
from worker import sends, tasks
from worker.models import Delivery, Send

PEOPLE = [  # email, name, fields, days since subscribing, days since last human open (None: never)
    ("ann@berlin.example", "Ann Meyer", {"city": "Berlin", "plan": "pro", "age": "34"}, 400, 3),
    ("bob@example.com", "Bob", {"city": "Berlin", "plan": "free", "age": "n/a"}, 10, None),
    ("cem@mail.example", "Cem 100% Sure", {"city": "Hamburg", "plan": "team", "age": "19"}, 800, 200),
    ("dee@example.com", "Dee", {"city": "", "age": "17"}, 30, 100),
    ("eve@berlin.example", "Eve", {"plan": "pro"}, 5, 1),
]


@pytest.fixture
def weekly(db_url: str) -> int:
    now = utcnow()
    with session_scope() as session:
        mailing_list = mailing_lists.create_list(session, "weekly", "Weekly", double_opt_in=False)
        for email, name, fields, joined, opened in PEOPLE:
            outcome = service.subscribe(session, mailing_list, email, name, source=ConsentSource.ADMIN)
            assert outcome.subscription is not None
            subscriber = session.get(Subscriber, outcome.subscription.subscriber_id)
            assert subscriber is not None
            subscriber.attributes = fields
            subscriber.last_human_open_at = now - timedelta(days=opened) if opened is not None else None
            outcome.subscription.created_at = now - timedelta(days=joined)
        return mailing_list.id


def members(list_id: int, expression: str) -> set[str]:
    with session_scope() as session:
        return set(session.scalars(select(Subscriber.email).select_from(Subscription)
                                   .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
                                   .where(*audience.conditions(list_id, expression))))


@pytest.mark.parametrize(("expression", "expected"), [
    ('fields.city = "Berlin"', {"ann", "bob"}),
    ('fields.city != "Berlin"', {"cem", "dee"}),  # a missing field is neither equal nor different
    ('fields.city is empty', {"dee", "eve"}),
    ('fields.city is not empty', {"ann", "bob", "cem"}),
    ('email_domain = "example.com"', {"bob", "dee"}),
    ('email_domain != "example.com" and not name contains "cem"', {"ann", "eve"}),
    ('name contains "100%"', {"cem"}),  # LIKE wildcards in the value are literal
    ('name contains "_"', set()),
    ('fields.plan in ["pro", "team"]', {"ann", "cem", "eve"}),
    ('fields.plan not in ["pro"]', {"bob", "cem"}),
    ('fields.age >= 18', {"ann", "cem"}),  # "n/a" is no number: neither an error nor a zero
    ('fields.age < 18', {"dee"}),
    ('subscribed_at >= 60 days ago', {"bob", "dee", "eve"}),
    (f'subscribed_at < {(utcnow() - timedelta(days=500)).date().isoformat()}', {"cem"}),
    ('last_human_open < 90 days ago', {"cem", "dee"}),
    ('last_human_open < 90 days ago or last_human_open is empty', {"bob", "cem", "dee"}),
    ('(fields.city = "Berlin" or fields.plan = "pro") and not (email = "bob@example.com")', {"ann", "eve"}),
    ("email = 'x\\'; DROP TABLE subscribers; --'", set()),
])
def test_every_operator_matches_what_python_says(weekly: int, expression: str, expected: set[str]) -> None:
    assert {email.split("@")[0] for email in members(weekly, expression)} == expected
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Subscriber)) == len(PEOPLE)  # nothing was dropped


@pytest.mark.parametrize(("expression", "column", "words"), [
    ('fields.city = ', 15, "expected a value"),
    ('city = "Berlin"', 1, "unknown term"),
    ('email = 3', 1, "email is text"),
    ('(name = "a"', 12, "expected ')'"),
    ('subscribed_at > "2024"', 1, "is a date"),
    ('name = "a" "b"', 12, "unexpected"),
    ('name ~ "a"', 6, "unexpected character"),
    ('fields.a-b = "x"', 9, "unexpected character"),
    ('subscribed_at > 2024-13-45', 17, "not a date"),
    ('fields.plan in []', 17, "expected a value"),
    ('(' * 30 + 'name = "a"' + ')' * 30, 21, "nested"),
    ('', 1, "empty"),
])
def test_mistakes_are_located(expression: str, column: int, words: str) -> None:
    with pytest.raises(SegmentError) as caught:
        compile_segment(expression)
    assert caught.value.column == column and words in str(caught.value)
    assert "^" in str(caught.value).splitlines()[-1]


def test_huge_expression_refused() -> None:
    with pytest.raises(SegmentError, match="longer than"):
        compile_segment('name = "a" or ' * 500 + 'name = "b"')


def test_cli_segment_and_send_plan_exactly_its_members(weekly: int) -> None:
    runner = CliRunner()
    created = runner.invoke(cli_app, ["segments", "create", "berliners", "--list", "weekly",
                                      "--where", 'fields.city = "Berlin" or email_domain = "berlin.example"'])
    assert created.exit_code == 0 and "3 subscribers match" in created.output
    broken = runner.invoke(cli_app, ["segments", "create", "bad", "--list", "weekly", "--where", "city = 1"])
    assert broken.exit_code == 1 and "unknown term" in broken.output and "Traceback" not in broken.output
    listed = runner.invoke(cli_app, ["segments", "ls"])
    assert "berliners" in listed.output and "3" in listed.output
    assert runner.invoke(cli_app, ["segments", "count", "berliners", "--list", "weekly"]).output.strip() == "3"
    sent = runner.invoke(cli_app, ["send", str(EXAMPLE), "--list", "weekly", "--segment", "berliners"])
    assert sent.exit_code == 0, sent.output
    received = Counter(m["To"].addresses[0].addr_spec for m in outbox_messages())
    assert received == Counter({"ann@berlin.example": 1, "bob@example.com": 1, "eve@berlin.example": 1})
    missing = runner.invoke(cli_app, ["send", str(EXAMPLE), "--list", "weekly", "--segment", "nobody",
                                      "--allow-resend"])
    assert missing.exit_code == 1 and "No segment named 'nobody'" in missing.output


def test_segment_is_frozen_on_a_scheduled_send(weekly: int) -> None:
    with session_scope() as session:
        mailing_list = mailing_lists.get_list(session, "weekly")
        audience.create_segment(session, mailing_list, "pros", 'fields.plan = "pro"')
        issue_id = save_issue(session, EXAMPLE.read_text(), filename=EXAMPLE.name).id
        send_id = sends.create(session, issue_id, weekly, sends.SendOptions(
            scheduled_at=utcnow() + timedelta(hours=1), segment="pros")).id
    with session_scope() as session:  # someone edits the segment after the send was made
        session.execute(update(Segment).values(expression="fields.plan is not empty"))
        session.execute(update(Send).values(scheduled_at=utcnow() - timedelta(seconds=1)))
    assert tasks.start_due_sends.delay().get() == [send_id]
    with session_scope() as session:
        planned = set(session.scalars(select(Subscriber.email).join(Delivery, ROW_OF_PERSON)
                                      .where(Delivery.send_id == send_id)))
    assert planned == {"ann@berlin.example", "eve@berlin.example"}


def test_api_segments_count_and_send(weekly: int) -> None:
    with session_scope() as session:
        token = create_api_token(session, create_user(session, "s@example.com", "correct horse battery", Role.STAFF),
                                 "t")
    api = TestClient(create_app(), headers={"Authorization": f"Bearer {token}"})
    bad = api.get("/api/v1/segments/count", params={"list": "weekly", "where": "fields.age >> 3"})
    assert bad.status_code == 422 and re.search(r"at column \d+", bad.json()["error"])
    assert api.get("/api/v1/segments/count", params={"list": "weekly", "where": "fields.age >= 18"}).json() == {
        "matching": 2}
    made = api.post("/api/v1/segments", json={"list": "weekly", "name": "adults", "where": "fields.age >= 18"})
    assert made.status_code == 201 and made.json()["matching"] == 2
    assert api.post("/api/v1/segments", json={"list": "weekly", "name": "adults", "where": "name = 'x'"}
                    ).status_code == 409
    assert [s["name"] for s in api.get("/api/v1/segments", params={"list": "weekly"}).json()] == ["adults"]
    issue = api.post("/api/v1/issues", json={"markdown": EXAMPLE.read_text()}).json()
    sent = api.post("/api/v1/sends", json={"issue_id": issue["id"], "list": "weekly", "segment": "adults"})
    assert sent.status_code == 201 and sent.json()["counters"]["sent"] == 2
    unknown = api.post("/api/v1/sends", json={"issue_id": issue["id"], "list": "weekly", "segment": "kids",
                                              "allow_resend": True})
    assert unknown.status_code == 409 and "No segment" in unknown.json()["error"]


def test_a_segment_changed_or_removed_leaves_the_sends_made_with_it_alone(weekly: int) -> None:
    """API and CLI: a segment's expression can be corrected and the segment forgotten between issues; a send made
    with it (here scheduled, not yet planned) keeps the expression it was made with. Unknown names are 404s or
    clean errors, a broken expression is refused with its column, and nothing changes then."""
    with session_scope() as session:
        token = create_api_token(session, create_user(session, "s@example.com", "correct horse battery", Role.STAFF),
                                 "t")
    api = TestClient(create_app(), headers={"Authorization": f"Bearer {token}"})
    assert api.post("/api/v1/segments", json={"list": "weekly", "name": "adults", "where": "fields.age >= 18"}
                    ).json()["matching"] == 2
    issue = api.post("/api/v1/issues", json={"markdown": EXAMPLE.read_text()}).json()
    later = (utcnow() + timedelta(days=1)).isoformat()
    made = api.post("/api/v1/sends", json={"issue_id": issue["id"], "list": "weekly", "segment": "adults",
                                           "scheduled_at": later})
    assert made.status_code == 201, made.text
    broken = api.patch("/api/v1/lists/weekly/segments/adults", json={"where": "fields.age >>= 30"})
    assert broken.status_code == 422 and re.search(r"at column \d+", broken.json()["error"])
    changed = api.patch("/api/v1/lists/weekly/segments/adults", json={"where": "fields.age >= 30"})
    assert changed.status_code == 200 and changed.json() == {"list": "weekly", "name": "adults",
                                                              "where": "fields.age >= 30", "matching": 1}
    assert api.patch("/api/v1/lists/weekly/segments/kids", json={"where": "fields.age < 18"}).status_code == 404
    assert api.patch("/api/v1/lists/nope/segments/adults", json={"where": "fields.age < 18"}).status_code == 404
    assert api.delete("/api/v1/lists/weekly/segments/adults").status_code == 204
    assert api.delete("/api/v1/lists/weekly/segments/adults").status_code == 404
    with session_scope() as session:
        send = session.get(Send, made.json()["id"])
        assert send is not None and send.segment_id is None and send.segment_expression == "fields.age >= 18"
    runner = CliRunner()
    assert runner.invoke(cli_app, ["segments", "create", "pros", "--list", "weekly", "--where",
                                   'fields.plan = "pro"']).exit_code == 0
    result = runner.invoke(cli_app, ["segments", "set", "pros", "--list", "weekly", "--where", 'fields.plan = "team"'])
    assert result.exit_code == 0 and "1 subscribers match" in result.output
    for args in (["segments", "set", "pros", "--list", "weekly", "--where", "fields.plan = "],
                 ["segments", "set", "nobody", "--list", "weekly", "--where", "name = 'x'"],
                 ["segments", "rm", "nobody", "--list", "weekly"]):
        failed = runner.invoke(cli_app, args)
        assert failed.exit_code == 1 and "Traceback" not in failed.output, failed.output
    assert runner.invoke(cli_app, ["segments", "rm", "pros", "--list", "weekly"]).exit_code == 0
    with session_scope() as session:
        assert audience.segments_of(session) == []
