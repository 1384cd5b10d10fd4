"""Merge tags through real sends: the ledger, the batch's re-check (which reads custom fields only when a tag uses
them), and each transport (outbox, SMTP to aiosmtpd, SendGrid to its stand-in) give every recipient their own
values; test sends and `newsletter render` use the sample subscriber."""

from __future__ import annotations

import email
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import insert, select, update
from typer.testing import CliRunner

from mailer.db import session_scope, utcnow
from mailer.merge_tags import Ref, Slot, Tag
from mailer.models import IssueRecord
from mailer.store import save_issue
from newsletter.cli import app
from subscribers import mailing_lists
from subscribers.models import MailingList, Subscriber, Subscription, SubscriptionStatus
from tests.mailer.test_merge_tags import ISSUE
from tests.support.audience import counters, started_send
from tests.support.mailbox import outbox_messages
from tests.support.sendgrid_standin import API_KEY, SendGridStandIn, render
from tests.support.smtp_sink import SMTPSink
from worker import archive, campaigns, sends, tasks
from worker.models import Delivery, Send

# address: (name, custom fields)
PEOPLE: dict[str, tuple[str, dict[str, Any]]] = {
    "ann@example.com": ("Ann", {"city": "Oslo", "plan": 3}),
    "evil@example.com": ("<script>x</script>\r\nBcc: victim@example.com", {"city": "Tom & Jerry", "plan": True}),
    "bare@example.com": ("", {}),
    "odd@example.com": ("Zoë", {"city": ["Rome", "Milan"], "plan": 2.0, "other": {"deep": 1}}),
}


@dataclass
class Tagged:
    list_id: int
    issue_id: int


def tagged_audience(*, tracked: bool = False) -> Tagged:
    now = utcnow()
    with session_scope() as session:
        mailing_list = mailing_lists.create_list(session, "weekly", "Weekly", double_opt_in=False)
        if tracked:
            mailing_lists.set_list_tracking(session, mailing_list, clicks=True, opens=True)
        issue = save_issue(session, ISSUE, filename="tags.md")
        session.execute(insert(Subscriber), [{"email": address, "name": name, "attributes": attributes,
                                              "created_at": now} for address, (name, attributes) in PEOPLE.items()])
        ids = dict(session.execute(select(Subscriber.email, Subscriber.id)).tuples().all())
        session.execute(insert(Subscription), [{"subscriber_id": ids[a], "list_id": mailing_list.id, "source": "test",
                                                "status": SubscriptionStatus.CONFIRMED, "created_at": now,
                                                "confirmed_at": now} for a in PEOPLE])
        return Tagged(mailing_list.id, issue.id)


def run_send(audience: Tagged, **options: object) -> int:
    with session_scope() as session:
        send_id = started_send(session, audience.issue_id, audience.list_id, **options)
    tasks.plan_send.delay(send_id).get()
    assert counters(send_id)["sent"] == len(PEOPLE)
    return send_id


def flat(text: str) -> str:
    return " ".join(text.split())


def check_copies(messages: dict[str, EmailMessage]) -> None:
    """What each subscriber's mail client shows."""
    assert set(messages) == set(PEOPLE)
    expected = {  # address: (subject, text of the intro, html fragment)
        "ann@example.com": ("Hi Ann: the Oslo digest", "Hello Ann, news for Oslo. Your address: ann@example.com. "
                                                       "Plan: 3.", "Hello Ann, news for Oslo."),
        "evil@example.com": ("Hi <script>x</script> Bcc: victim@example.com: the Tom & Jerry digest",
                             "Hello <script>x</script> Bcc: victim@example.com, news for Tom & Jerry.",
                             "Hello &lt;script&gt;x&lt;/script&gt; Bcc: victim@example.com, news for Tom &amp; Jerry."),
        "bare@example.com": ("Hi reader: the  digest",
                             "Hello friend, news for your town. Your address: bare@example.com. Plan: .",
                             "Hello friend, news for your town."),
        "odd@example.com": ("Hi Zoë: the Rome, Milan digest",
                            "Hello Zoë, news for Rome, Milan. Your address: odd@example.com. Plan: 2.",
                            "Hello Zoë, news for Rome, Milan."),
    }
    for address, (subject, text, html_fragment) in expected.items():
        message = messages[address]
        assert message["Subject"] == subject and message["Bcc"] is None
        plain = flat(message.get_body(("plain",)).get_content())
        html = flat(message.get_body(("html",)).get_content())
        assert text in plain and html_fragment in html, (address, plain[:600])
        assert "__NL" not in plain + html and "<script>" not in html
        city = {"ann@example.com": "Oslo", "evil@example.com": "Tom%20%26%20Jerry", "bare@example.com": "",
                "odd@example.com": "Rome%2C%20Milan"}[address]
        assert f"https://weather.example.com/today?city={city}&u=1" in plain


def test_each_recipient_gets_their_own_values_through_the_outbox(db_url: str) -> None:
    audience = tagged_audience()
    send_id = run_send(audience)
    check_copies({m["To"].addresses[0].addr_spec: m for m in outbox_messages()})
    with session_scope() as session:
        send = session.get(Send, send_id)
        assert send is not None and send.merge_tags and "__NLT_TAG" in (send.subject or "")
        record = session.get(IssueRecord, audience.issue_id)
        assert record is not None and record.subject == "Hi reader: the  digest"  # the archive's subject
        copy = archive.archived_copy(session, record.slug, session.get(MailingList, audience.list_id))
    assert copy is not None and copy.subject == "Hi reader: the  digest" and "__NL" not in copy.html
    assert "Hello friend, news for your town." in flat(copy.html) and "Ann" not in copy.html


def test_smtp_path_fills_the_same_values(sqlite_url: str, settings, monkeypatch: pytest.MonkeyPatch) -> None:
    sink = SMTPSink().start()
    try:
        monkeypatch.setattr(settings, "smtp_host", "127.0.0.1")
        monkeypatch.setattr(settings, "smtp_port", sink.port)
        run_send(tagged_audience(tracked=True), transport="smtp")
        check_copies({r.rcpt: r.message for r in sink.received})
    finally:
        sink.stop()


def test_sendgrid_path_fills_by_substitution(pg_url: str, settings, monkeypatch: pytest.MonkeyPatch) -> None:
    standin = SendGridStandIn().start()
    try:
        monkeypatch.setattr(settings, "sendgrid_host", standin.url)
        monkeypatch.setattr(settings, "sendgrid_api_key", SecretStr(API_KEY))
        run_send(tagged_audience(), transport="sendgrid")
        [body] = standin.state.bodies
        copies = {}
        for index, item in enumerate(body["personalizations"]):
            subject, text, html = render(body, index)
            message = EmailMessage(policy=policy.default)
            message["Subject"] = subject
            message.set_content(text)
            message.add_alternative(html, subtype="html")
            copies[item["to"][0]["email"]] = message
            assert all("\n" not in v for k, v in item["substitutions"].items() if "_TAG" in k)
        check_copies(copies)
    finally:
        standin.stop()


def test_the_recheck_reads_custom_fields_only_for_field_tags(db_url: str) -> None:
    audience = tagged_audience()
    with session_scope() as session:
        send_id = started_send(session, audience.issue_id, audience.list_id)
        campaigns.plan_send(session, send_id)
    with session_scope() as session:
        ids = list(session.scalars(select(Delivery.id).where(Delivery.send_id == send_id).order_by(Delivery.id)))
        plain = campaigns._recheck(session, audience.list_id, ids, [Slot(Tag(Ref.NAME))])
        fields = campaigns._recheck(session, audience.list_id, ids, [Slot(Tag(Ref.FIELD, "city"))])
    assert [row.fields for row in plain] == [None] * len(PEOPLE)
    assert [row.fields for row in fields] == [attributes for _name, attributes in PEOPLE.values()]


def test_a_running_send_keeps_the_tags_it_froze(db_url: str) -> None:
    """The slots are frozen with the parts: an issue edited after the plan changes nothing in the running send."""
    audience = tagged_audience()
    with session_scope() as session:
        send_id = started_send(session, audience.issue_id, audience.list_id)
        campaigns.plan_send(session, send_id)
        session.execute(update(IssueRecord).values(source=ISSUE.replace("subscriber.fields.city", "subscriber.name")))
    with session_scope() as session:
        [(first, last)] = campaigns.pending_ranges(session, send_id)
    campaigns.send_batch(send_id, first, last)
    check_copies({m["To"].addresses[0].addr_spec: m for m in outbox_messages()})


def test_test_send_uses_the_sample_subscriber(db_url: str) -> None:
    audience = tagged_audience()
    with session_scope() as session:
        with_list = sends.send_test(session, audience.issue_id, "editor@example.com", list_id=audience.list_id)
        without = sends.send_test(session, audience.issue_id, "editor@example.com")
    assert with_list.ok and without.ok
    for message in outbox_messages():
        assert message["Subject"] == "[TEST] Hi Sample Reader: the [city] digest"
        plain = flat(message.get_body(("plain",)).get_content())
        assert "Hello Sample Reader, news for your town. Your address: editor@example.com. Plan: [plan]." in plain


def test_render_fills_tags_with_the_sample_subscriber(tmp_path: Path) -> None:
    issue = tmp_path / "tags.md"
    issue.write_text(ISSUE)
    result = CliRunner().invoke(app, ["render", str(issue), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "subject: Hi Sample Reader: the [city] digest" in result.output
    message = email.message_from_bytes((tmp_path / "out" / "message.eml").read_bytes(), policy=policy.default)
    assert message["Subject"] == "Hi Sample Reader: the [city] digest"
    html = (tmp_path / "out" / "email.html").read_text()
    assert "Hello Sample Reader, news for your town." in flat(html) and "__NL" not in html
    web = (tmp_path / "out" / "web.html").read_text()
    assert "Hello friend, news for your town." in flat(web) and "Sample Reader" not in web


def test_an_issue_stored_before_tags_existed_is_refused_with_its_problems(db_url: str) -> None:
    """Text between {{ }} was literal once; such a stored issue is refused when a send or a test send is asked for,
    with the located problem, instead of failing in the plan task."""
    audience = tagged_audience()
    with session_scope() as session:
        session.execute(update(IssueRecord).values(source=ISSUE.replace("subscriber.fields.plan", "subscriber.plna")))
    with session_scope() as session, pytest.raises(sends.SendError) as refused:
        sends.create(session, audience.issue_id, audience.list_id)
    assert "tags.md" not in str(refused.value) and ":5: unknown subscriber attribute 'plna'" in str(refused.value)
    with session_scope() as session, pytest.raises(sends.SendError, match="cannot be sent as written"):
        sends.send_test(session, audience.issue_id, "editor@example.com")
    with session_scope() as session:
        assert session.scalar(select(Send.id)) is None
    assert outbox_messages() == []
