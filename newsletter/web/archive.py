"""The public web archive of sent issues, and its RSS feed. Only issues that actually went out are listed."""

from __future__ import annotations

from email.utils import format_datetime
from html import escape

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from mailer.i18n import long_date
from mailer.models import IssueRecord
from mailer.settings import get_settings
from newsletter.web.deps import db_session
from newsletter.web.templating import gettext_for, render_page
from subscribers.models import MailingList
from worker.models import Send, SendStatus

router = APIRouter(include_in_schema=False)
_SENT = (SendStatus.RUNNING, SendStatus.DONE, SendStatus.PAUSED)


def _public_sends() -> Select[int]:
    """Issues sent to at least one list whose archive is public (a private list's issues stay private)."""
    return (select(Send.issue_id).join(MailingList, MailingList.id == Send.list_id)
            .where(Send.status.in_(_SENT), MailingList.archive_private.is_(False)))


def _published(session: Session, limit: int = 100) -> list[IssueRecord]:
    sent = _public_sends()
    return list(session.scalars(select(IssueRecord).where(IssueRecord.id.in_(sent), IssueRecord.web_html.is_not(None))
                                .order_by(IssueRecord.published_at.desc(), IssueRecord.id.desc()).limit(limit)))


@router.get("/archive", response_class=HTMLResponse)
def archive(request: Request, session: Session = db_session) -> HTMLResponse:
    return render_page(request, "archive/index.html", {"issues": _published(session), "long_date": long_date})


@router.get("/archive.rss")
def feed(session: Session = db_session) -> Response:
    settings = get_settings()
    _ = gettext_for(None)
    base = settings.base_url.rstrip("/")
    items = []
    for issue in _published(session, 50):
        when = issue.published_at or issue.created_at
        items.append(f"<item><title>{escape(issue.subject)}</title><link>{base}/archive/{issue.slug}</link>"
                     f'<guid isPermaLink="true">{base}/archive/{issue.slug}</guid>'
                     f"<pubDate>{format_datetime(when)}</pubDate><description>{escape(issue.preheader)}</description>"
                     "</item>")
    body = (f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>{escape(settings.from_name)}'
            f"</title><link>{base}/archive</link><description>"
            f"{escape(_('Past issues of %(name)s') % {'name': settings.from_name})}</description>"
            f"{''.join(items)}</channel></rss>")
    return Response(body, media_type="application/rss+xml")


@router.get("/archive/{slug}", response_class=HTMLResponse)
def archived_issue(slug: str, session: Session = db_session) -> HTMLResponse:
    sent = _public_sends()
    issue = session.scalar(select(IssueRecord).where(IssueRecord.slug == slug, IssueRecord.id.in_(sent)))
    if issue is None or issue.web_html is None:
        return HTMLResponse("<h1>Not found</h1><p>No sent issue has this address.</p>", status_code=404)
    return HTMLResponse(issue.web_html)
