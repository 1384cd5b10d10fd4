"""The public archive in a list's language and brand: a German and a Chinese list's archive index, feed and issue
pages carry no English chrome and date their issues as their readers write dates; a private list's archive pages
answer exactly as a missing list's; the global index stays in the service's language with one section per list;
and the admin's preview for a German list shows the German chrome the send will have."""

from __future__ import annotations

import datetime as dt
import html as html_lib
import re
import xml.etree.ElementTree as ET

import pytest
from fastapi.testclient import TestClient

from mailer.db import session_scope
from mailer.i18n import long_date
from mailer.models import IssueRecord
from mailer.store import save_issue
from newsletter.auth import create_user
from newsletter.models import Role
from newsletter.web.app import create_app
from newsletter.web.ratelimit import reset
from subscribers import mailing_lists
from tests.newsletter.test_language import english_in
from tests.support.audience import EXAMPLE, started_send
from worker import campaigns
from worker.models import Send

PASSWORD = "correct horse battery staple"
LISTS = {"woche": ("Die Woche", "de"), "zhoukan": ("科技周刊", "zh-Hans"), "intern": ("Intern", "de"),
         "weekly": ("Weekly", "en")}
# What each language's pages must say (catalog translations written out, so a lost catalog fails the test).
EXPECTED = {"woche": ["Frühere Ausgaben von Die Woche", "Erschienen am", "Abonnieren", "RSS-Feed"],
            "zhoukan": ["科技周刊 往期回顾", "发布于", "订阅", "RSS 订阅源"]}


def _sent_at(_slug: str) -> dict[str, str]:
    """The day each list's send started, as the archive must write it in the list's language."""
    with session_scope() as session:
        out = {}
        for send in session.query(Send).all():
            mailing_list = session.get(mailing_lists.MailingList, send.list_id)
            assert mailing_list is not None and send.started_at is not None
            out[mailing_list.slug] = long_date(send.started_at, mailing_list.language)
        return out


@pytest.fixture
def archive(db_url: str) -> str:
    """The example issue sent (planned, so frozen) to a German, a Chinese, a private German and an English list."""
    reset()
    with session_scope() as session:
        issue = save_issue(session, EXAMPLE.read_text(), filename=str(EXAMPLE))
        sends = []
        for slug, (name, language) in LISTS.items():
            look = mailing_lists.ListLook(language=language)
            mailing_list = mailing_lists.create_list(session, slug, name, look=look)
            if slug == "intern":
                mailing_lists.configure_signup(mailing_list, archive_private=True)
            session.flush()
            sends.append(started_send(session, issue.id, mailing_list.id))
        slug = issue.slug
    for send_id in sends:
        with session_scope() as session:
            campaigns.plan_send(session, send_id)
    return slug


@pytest.mark.parametrize("list_slug", ["woche", "zhoukan"])
def test_a_lists_archive_speaks_its_language(archive: str, list_slug: str) -> None:
    client = TestClient(create_app())
    language = LISTS[list_slug][1]
    index = client.get(f"/lists/{list_slug}/archive")
    assert index.status_code == 200 and f'<html lang="{language}">' in index.text
    for words in EXPECTED[list_slug]:
        assert words in index.text, words
    assert _sent_at(archive)[list_slug] in index.text  # "25. November 2026", "2026年11月25日"
    assert f'href="/lists/{list_slug}/archive/{archive}"' in index.text
    assert f'href="/lists/{list_slug}/archive.rss"' in index.text

    feed = client.get(f"/lists/{list_slug}/archive.rss")
    channel = ET.fromstring(feed.content).find("channel")
    assert feed.status_code == 200 and channel is not None
    assert channel.findtext("language") == language
    assert channel.findtext("description") == EXPECTED[list_slug][0]
    assert [item.findtext("link") for item in channel.iter("item")] == [
        f"http://testserver/lists/{list_slug}/archive/{archive}"]

    issue = client.get(f"/lists/{list_slug}/archive/{archive}")
    assert issue.status_code == 200 and f'lang="{language}"' in issue.text
    back = {"woche": "Bisherige Ausgaben von Die Woche", "zhoukan": "科技周刊 往期期刊"}[list_slug]
    why = {"woche": "weil Sie Die Woche abonniert haben", "zhoukan": "是因为您订阅了科技周刊"}[list_slug]
    dateline = long_date(dt.date(2023, 9, 22), language)  # the issue's own date, localised
    for words in (back, why, dateline, EXPECTED[list_slug][2]):
        assert words in issue.text, words

    found = {where: english_in(text) for where, text in
             {"index": index.text, "feed": feed.text, "issue": issue.text}.items()}
    assert not any(found.values()), found
    assert "You are receiving" not in issue.text and "Published on" not in index.text


def test_the_issue_address_shows_the_copy_of_its_first_public_send(archive: str) -> None:
    client = TestClient(create_app())
    page = client.get(f"/archive/{archive}")
    assert page.status_code == 200 and 'lang="de"' in page.text and "Die Woche abonniert" in page.text
    assert not english_in(page.text)


def test_the_global_index_is_the_services_with_a_section_per_public_list(archive: str) -> None:
    client = TestClient(create_app())
    index = client.get("/archive")
    assert index.status_code == 200 and '<html lang="en">' in index.text
    for name, slug in (("Die Woche", "woche"), ("科技周刊", "zhoukan"), ("Weekly", "weekly")):
        assert f"All issues of {name}" in index.text and f'href="/lists/{slug}/archive"' in index.text
    assert "Intern" not in index.text and "/lists/intern/" not in index.text
    assert _sent_at(archive)["weekly"] in index.text  # the service's language dates every section
    feed = ET.fromstring(client.get("/archive.rss").content)
    assert feed.findtext("channel/language") == "en"
    assert [item.findtext("link") for item in feed.iter("item")] == [f"http://testserver/archive/{archive}"]


def test_private_and_missing_lists_answer_alike(archive: str) -> None:
    client = TestClient(create_app())
    for suffix in ("/archive", "/archive.rss", f"/archive/{archive}", "/archive/no-such-issue"):
        private, missing = client.get(f"/lists/intern{suffix}"), client.get(f"/lists/nosuch{suffix}")
        assert private.status_code == missing.status_code == 404, suffix
        assert private.text == missing.text and private.headers["content-type"] == missing.headers["content-type"]
        assert "Intern" not in private.text
    # Forged and hostile addresses: a clean 404, never a traceback or a 500.
    for path in ("/lists/" + "w" * 5000 + "/archive", f"/lists/woche/archive/{'x' * 5000}", "/archive/%00",
                 "/lists/woche/archive/..%2F..%2Fetc", "/lists/WOCHE/archive/nope", "/archive/' OR 1=1 --",
                 "/lists/woche%00/archive.rss", "/lists/%00/archive", "/lists/%00/subscribe", "/lists/%00/logo"):
        response = client.get(path)
        assert response.status_code == 404, path
    assert client.get("/lists/WOCHE/archive").status_code == 200  # slugs are case-insensitive, as elsewhere


def test_view_in_browser_leads_to_the_lists_own_copy(archive: str) -> None:
    with session_scope() as session:
        send = session.query(Send).join(mailing_lists.MailingList, mailing_lists.MailingList.id == Send.list_id) \
            .filter(mailing_lists.MailingList.slug == "woche").one()
        assert send.web_html is not None and "__NLH_" not in send.web_html and "/c/" not in send.web_html
        batch = campaigns._claim_batch(send.id, 0, 0, campaigns.get_settings())
        assert batch is not None and batch.web_url == f"http://testserver/lists/woche/archive/{archive}"


@pytest.fixture
def admin(archive: str) -> TestClient:
    with session_scope() as session:
        create_user(session, "admin@example.com", PASSWORD, Role.ADMIN)
    client = TestClient(create_app())
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/admin/login").text)
    assert token
    response = client.post("/admin/login", data={"email": "admin@example.com", "password": PASSWORD,
                                                 "csrf_token": token.group(1)}, follow_redirects=False)
    assert response.status_code == 303
    return client


def _issue_id(slug: str) -> int:
    with session_scope() as session:
        return session.query(IssueRecord).filter(IssueRecord.slug == slug).one().id


def _preview(page: str) -> str:
    found = re.search(r'<iframe id="phone"[^>]*srcdoc="([^"]*)"', page)
    assert found, page[:500]
    return html_lib.unescape(found.group(1))


def test_the_admin_preview_for_a_german_list_shows_german_chrome(admin: TestClient, archive: str) -> None:
    issue_id = _issue_id(archive)
    german = admin.get(f"/admin/issues/{issue_id}?preview=woche")
    assert german.status_code == 200 and '<option value="woche" selected>' in german.text
    shown = _preview(german.text)
    for words in ("Hallo Ada,", "Abbestellen", "Einstellungen verwalten", "weil Sie Die Woche abonniert haben",
                  "22. September 2023"):
        assert words in shown, words
    assert not english_in(shown) and "__NLH_" not in shown and 'lang="de"' in shown

    chinese = _preview(admin.get(f"/admin/issues/{issue_id}?preview=zhoukan").text)
    assert "退订" in chinese and "2023年9月22日" in chinese and not english_in(chinese)

    plain = _preview(admin.get(f"/admin/issues/{issue_id}").text)  # no list: the service's own (English) chrome
    assert "Unsubscribe" in plain and "Abbestellen" not in plain
    for hostile in ("nosuch", "x" * 5000, "woche' OR '1'='1", "%00", "woche\x00"):
        page = admin.get(f"/admin/issues/{issue_id}", params={"preview": hostile})
        assert page.status_code == 200 and "Unsubscribe" in _preview(page.text)

    token = re.search(r'name="csrf_token" value="([^"]+)"', german.text)
    assert token
    source = EXAMPLE.read_text()
    live = admin.post("/admin/issues/preview", data={"source": source, "preview_list": "woche",
                                                     "csrf_token": token.group(1)})
    assert live.status_code == 200 and "Abbestellen" in live.json()["html"] and not english_in(live.json()["html"])
    live = admin.post("/admin/issues/preview", data={"source": source, "preview_list": "\x00" + "nosuch" * 1000,
                                                     "csrf_token": token.group(1)})
    assert live.status_code == 200 and "Unsubscribe" in live.json()["html"]
    saved = admin.post(f"/admin/issues/{issue_id}", data={"source": source, "preview_list": "woche",
                                                          "csrf_token": token.group(1)}, follow_redirects=False)
    assert saved.status_code == 303 and f"/admin/issues/{issue_id}?preview=woche&flash=" in saved.headers["location"]
    again = admin.get(saved.headers["location"])
    assert "Saved" in again.text and "Abbestellen" in _preview(again.text)
