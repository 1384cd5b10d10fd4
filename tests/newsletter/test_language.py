"""A German and a Chinese list read no English in their chrome: the issue they are sent, the confirmation and welcome
emails, and every public page (subscribe, confirm, unsubscribe, preferences, messages), through the real app and the
real send path into the outbox. English is the source language: every message id of the catalog is a piece of
English chrome, so none of them may appear in what these lists' readers see.
"""

from __future__ import annotations

import html as html_lib
import re
from email.message import EmailMessage

import pytest
from babel.messages.pofile import read_po
from fastapi.testclient import TestClient
from sqlalchemy import select

from mailer.db import session_scope
from mailer.i18n import LOCALE_DIR, catalog_for, long_date, supported_languages
from mailer.issue import parse_issue
from mailer.store import save_issue
from newsletter.web.app import create_app
from newsletter.web.ratelimit import reset
from subscribers import mailing_lists, service
from subscribers.tokens import Purpose, link
from tests.support.audience import EXAMPLE, started_send
from tests.support.mailbox import links, messages_to, outbox_messages
from worker import campaigns

with (LOCALE_DIR / "messages.pot").open("rb") as _pot:
    CHROME = sorted({m.id for m in read_po(_pot) if m.id and isinstance(m.id, str)}, key=len, reverse=True)
# Words that are also German ("Name") or part of longer translations are checked as whole phrases only.
PHRASES = [m.split("%(")[0].strip(" :,.?") for m in CHROME]
PHRASES = [p for p in PHRASES if len(p) >= 6 and p not in {"Name", "Archive"}]


def english_in(text: str) -> list[str]:
    plain = html_lib.unescape(re.sub(r"<[^>]+>", " ", text))
    plain = re.sub(r"\s+", " ", plain)
    return [phrase for phrase in PHRASES if re.search(rf"(?<![\w-]){re.escape(phrase)}(?![\w-])", plain)]


def test_the_catalogs_cover_every_message() -> None:
    assert supported_languages() == ["en", "de", "zh-Hans"]
    for name in ("de", "zh_Hans"):
        with (LOCALE_DIR / name / "LC_MESSAGES" / "messages.po").open("rb") as po:
            catalog = read_po(po)
        missing = [m for m in CHROME if not catalog.get(m) or not catalog[m].string]
        assert not missing, f"{name}: untranslated {missing}"
    assert catalog_for("de-AT") == "de" and catalog_for("zh-CN") == "zh_Hans" and catalog_for("en") is None
    assert long_date(parse_issue(EXAMPLE.read_text(), "x").date, "de") == "22. September 2023"  # type: ignore[arg-type]


@pytest.fixture
def app_client(db_url: str) -> TestClient:
    reset()
    with session_scope() as session:
        mailing_lists.create_list(session, "woche", "Die Woche", welcome=True,
                                  look=mailing_lists.ListLook(language="de"))
        mailing_lists.create_list(session, "zhoukan", "科技周刊", welcome=True,
                                  look=mailing_lists.ListLook(language="zh-Hans"))
    return TestClient(create_app(), base_url="http://testserver")


def _csrf(client: TestClient, path: str) -> str:
    page = client.get(path)
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def _bodies(message: EmailMessage) -> str:
    return (str(message["Subject"]) + "\n" + message.get_body(("plain",)).get_content() + "\n"
            + message.get_body(("html",)).get_content())


@pytest.mark.parametrize(("slug", "lang", "expected"), [("woche", "de", "Abbestellen"), ("zhoukan", "zh-Hans", "退订")])
def test_a_list_in_german_or_chinese_reads_no_english(app_client: TestClient, slug: str, lang: str,
                                                      expected: str) -> None:
    client = app_client
    address = f"reader-{slug}@example.com"
    seen: dict[str, str] = {}
    page = client.get(f"/lists/{slug}/subscribe")
    seen["subscribe"] = page.text
    assert f'lang="{lang}"' in page.text
    answer = client.post(f"/lists/{slug}/subscribe", data={"email": address, "name": "",
                                                          "csrf_token": _csrf(client, f"/lists/{slug}/subscribe")})
    seen["check your inbox"] = answer.text
    seen["bad address"] = client.post(f"/lists/{slug}/subscribe", data={
        "email": "not-an-address", "csrf_token": _csrf(client, f"/lists/{slug}/subscribe")}).text
    [confirmation] = messages_to(address)
    seen["confirmation email"] = _bodies(confirmation)
    confirm_url = links(confirmation, "/confirm/")[0]
    path = confirm_url.replace("http://testserver", "")
    seen["confirm page"] = client.get(path).text
    seen["confirmed"] = client.post(path, data={"csrf_token": _csrf(client, path)}).text
    [welcome] = [m for m in messages_to(address) if m is not confirmation and "/confirm/" not in _bodies(m)]
    seen["welcome email"] = _bodies(welcome)

    with session_scope() as session:
        mailing_list = mailing_lists.get_list(session, slug)
        issue = save_issue(session, EXAMPLE.read_text(), filename=str(EXAMPLE))
        send_id = started_send(session, issue.id, mailing_list.id)
        subscriber = session.scalar(select(service.Subscriber).where(service.Subscriber.email == address))
        assert subscriber is not None
        unsubscribe_path = link(Purpose.UNSUBSCRIBE, subscriber.id, mailing_list.id).replace("http://testserver", "")
        preferences_path = link(Purpose.PREFERENCES, subscriber.id).replace("http://testserver", "")
    with session_scope() as session:
        campaigns.plan_send(session, send_id)
    with session_scope() as session:
        for first, last in campaigns.pending_ranges(session, send_id):
            campaigns.send_batch(send_id, first, last)
    issue_copy = [m for m in outbox_messages() if m["To"].addresses[0].addr_spec == address
                  and "Digital Digest" in str(m["Subject"])]
    assert len(issue_copy) == 1
    issue_text = _bodies(issue_copy[0])
    assert expected in issue_text and f'lang="{lang}"' in issue_text
    seen["issue email"] = issue_text  # the example's own words are English, but none is a piece of chrome
    assert not re.search(r"\bHi\b", issue_text)

    seen["preferences"] = client.get(preferences_path).text
    seen["unsubscribe page"] = client.get(unsubscribe_path).text
    seen["unsubscribed"] = client.post(unsubscribe_path, data={"scope": "list"}).text
    # A tampered link names no list we can trust: it gets the service's language (NEWSLETTER_LANGUAGE), here English.
    assert "This link is not valid" in client.get(path[:-3] + "xyz").text

    found = {where: english_in(text) for where, text in seen.items()}
    assert not any(found.values()), {where: hits for where, hits in found.items() if hits}
    assert expected in seen["unsubscribe page"] and expected in seen["preferences"]
