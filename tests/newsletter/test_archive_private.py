"""A list whose archive is private: its issues never appear in the public web archive or the RSS feed."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from fastapi.testclient import TestClient

from mailer.db import session_scope
from mailer.models import IssueRecord
from newsletter.web.app import create_app
from subscribers import mailing_lists
from tests.support.audience import make_audience
from worker.models import Send, SendStatus


def _sent_to(list_slugs: list[str], issue_id: int) -> None:
    with session_scope() as session:
        for slug in list_slugs:
            list_id = mailing_lists.get_list(session, slug).id
            session.add(Send(issue_id=issue_id, list_id=list_id, status=SendStatus.DONE,
                             transport="outbox"))


def _public_view(slug: str) -> tuple[int, bool, bool]:
    public = TestClient(create_app())
    feed = ET.fromstring(public.get("/archive.rss").content)
    in_feed = any((item.findtext("link") or "").endswith(f"/archive/{slug}") for item in feed.iter("item"))
    return public.get(f"/archive/{slug}").status_code, f"/archive/{slug}" in public.get("/archive").text, in_feed


def _list_view(list_slug: str, slug: str) -> tuple[int, int, int, bool]:
    """A list's own archive pages: index, feed and issue status codes, and whether the index names the issue."""
    public = TestClient(create_app())
    index = public.get(f"/lists/{list_slug}/archive")
    return (index.status_code, public.get(f"/lists/{list_slug}/archive.rss").status_code,
            public.get(f"/lists/{list_slug}/archive/{slug}").status_code, f"/archive/{slug}" in index.text)


def test_private_list_issues_stay_out_of_archive_and_rss(db_url: str) -> None:
    audience = make_audience(1, pending=0, unsubscribed=0, suppressed=0)
    with session_scope() as session:
        mailing_lists.create_list(session, "members", "Members only")
        mailing_lists.configure_signup(mailing_lists.get_list(session, "members"), archive_private=True)
        issue = session.get(IssueRecord, audience.issue_id)
        assert issue is not None and issue.web_html
        slug = issue.slug
    _sent_to(["members"], audience.issue_id)
    assert _public_view(slug) == (404, False, False)
    assert _list_view("members", slug) == (404, 404, 404, False) == _list_view("no-such-list", slug)
    _sent_to(["weekly"], audience.issue_id)  # the same issue also went to a public list: now it is public
    assert _public_view(slug) == (200, True, True)
    assert _list_view("weekly", slug) == (200, 200, 200, True)
    assert _list_view("members", slug) == (404, 404, 404, False)  # but never on the private list's own pages
    with session_scope() as session:
        mailing_lists.configure_signup(mailing_lists.get_list(session, "weekly"), archive_private=True)
    assert _public_view(slug) == (404, False, False)
    assert _list_view("weekly", slug) == (404, 404, 404, False)
