"""The issue editor: the issues, a new one from Markdown (typed or uploaded), editing with a live phone and
desktop preview, and what the renderer warns about. Sending an issue is in admin/sends.py."""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import urlencode

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy.orm import Session

from mailer.issue import Issue, IssueError, parse_issue
from mailer.message import personalize
from mailer.models import IssueRecord
from mailer.placeholders import Key
from mailer.render import RenderedIssue, RenderError, render_issue
from mailer.settings import get_settings
from mailer.store import find_issue, recent_issues, save_issue, update_issue
from newsletter.auth import Principal
from newsletter.web.admin.common import admin_router, flash_message, page, redirect
from newsletter.web.csrf import verify_csrf
from newsletter.web.deps import db_session, page_user
from newsletter.web.forms import read_form
from subscribers import audience, mailing_lists, queries
from subscribers.models import MailingList
from subscribers.service import ServiceError
from worker import content as send_content
from worker import reports

router = admin_router()
SHOWN = 100
NEW_ISSUE = """---
subject: "Digital Digest Weekly: "
preheader: ""
date: 2026-01-01
cta:
  text: "Read the full report"
  url: "https://example.com/report"
---
Intro.

## First story
Two paragraphs.

## Wrapping Up
Closing words.
"""


def preview_html(html: str) -> str:
    """What the preview iframes show: a sample name, and links that do not pretend to work."""
    return html.replace("__NLH_NAME__", "Ada").replace("__NLH_", "#__NLH_")


def _preview_list(session: Session, slug: str) -> MailingList | None:
    """The list a preview is for: None (the service's own language and brand) for none or an unknown one."""
    try:
        return mailing_lists.get_list(session, slug) if slug.strip() else None
    except ServiceError:
        return None


def _render_for(document: Issue, mailing_list: MailingList | None) -> tuple[str, RenderedIssue]:
    """The preview's HTML, by the send path when it is for a list (worker.content.sample_issue: rendered for the
    list's language and brand, frozen, tracking applied as the plan applies it), with a sample name and personal
    links that go nowhere."""
    if mailing_list is None:
        rendered = render_issue(document, force=True)
        return preview_html(rendered.html), rendered
    content, recipient, rendered = send_content.sample_issue(document, mailing_list, get_settings(), name="Ada")
    inert = {Key.UNSUBSCRIBE_URL: "#unsubscribe", Key.PREFERENCES_URL: "#preferences", Key.WEB_URL: "#web"}
    html, _text = personalize(content, replace(recipient, values={**recipient.values, **inert}))
    return html, rendered


@router.get("/issues", response_class=HTMLResponse)
def issues_page(request: Request, user: Principal = Depends(page_user),
                session: Session = db_session) -> HTMLResponse:
    return page(request, "issues.html", user, "issues", issues=recent_issues(session, SHOWN), template=NEW_ISSUE)


async def _source_from_form(request: Request) -> tuple[str, str]:
    form = await read_form(request)
    upload = form.get("file")
    if upload is not None and not isinstance(upload, str) and upload.filename:
        return (await upload.read()).decode("utf-8", errors="replace"), upload.filename
    return str(form.get("source", "")), "issue.md"


@router.post("/issues", dependencies=[Depends(verify_csrf)])
async def create_issue(request: Request, user: Principal = Depends(page_user),
                       session: Session = db_session) -> Response:
    source, filename = await _source_from_form(request)
    try:
        record = save_issue(session, source, filename=filename, force=True)
    except IssueError as exc:
        return page(request, "issues.html", user, "issues", issues=recent_issues(session, SHOWN), source=source,
                    template=NEW_ISSUE, problems=[str(p) for p in exc.problems], status_code=400)
    session.commit()
    return redirect(f"/admin/issues/{record.id}", "Saved")


def _issue_page(request: Request, user: Principal, session: Session, record: IssueRecord,
                problems: list[str] | None = None, status_code: int = 200, preview_for: str | None = None
                ) -> HTMLResponse:
    """The editor. The preview is for `preview_for` (a list's slug), else the issue's own `list:`, else no list."""
    warnings: list[str] = []
    html = preview_html(record.html or "")
    chosen: MailingList | None = None
    try:
        document = parse_issue(record.source, record.slug)
        chosen = _preview_list(session, preview_for if preview_for is not None else document.list_slug or "")
        html, rendered = _render_for(document, chosen)
        warnings = rendered.warnings
    except (IssueError, RenderError) as exc:
        warnings = [str(exc)]
    return page(request, "issue.html", user, "issues", issue=record, preview_html=html,
                preview_list=chosen.slug if chosen is not None else "",
                size=len((record.html or "").encode()), warnings=warnings, problems=problems,
                sends=reports.sends_of_issue(session, record.id), lists=queries.all_lists(session),
                segments=audience.segments_of(session),
                flash=flash_message(request), status_code=status_code)


@router.post("/issues/preview", dependencies=[Depends(verify_csrf)])
async def live_preview(request: Request, user: Principal = Depends(page_user),
                       session: Session = db_session) -> JSONResponse:
    """Rendered as the editor types (the page's script posts here), for the list chosen above the preview; errors
    come back located, for the editor."""
    form = await read_form(request)
    source = str(form.get("source", ""))
    try:
        html, rendered = _render_for(parse_issue(source, "preview"),
                                     _preview_list(session, str(form.get("preview_list", ""))))
    except IssueError as exc:
        return JSONResponse({"problems": [str(p) for p in exc.problems]}, status_code=422)
    except RenderError as exc:
        return JSONResponse({"problems": [str(exc)]}, status_code=422)
    return JSONResponse({"html": html, "warnings": rendered.warnings, "bytes": len(rendered.html.encode())})


@router.get("/issues/{issue_id}", response_class=HTMLResponse)
def issue_page(request: Request, issue_id: int, user: Principal = Depends(page_user),
               session: Session = db_session, preview: str | None = None) -> HTMLResponse:
    record = find_issue(session, issue_id)
    if record is None:
        return page(request, "issues.html", user, "issues", issues=[], template=NEW_ISSUE, flash="No such issue.",
                    flash_kind="error", status_code=404)
    return _issue_page(request, user, session, record, preview_for=preview[:200] if preview is not None else None)


@router.post("/issues/{issue_id}", dependencies=[Depends(verify_csrf)])
async def edit_issue(request: Request, issue_id: int, user: Principal = Depends(page_user),
                     session: Session = db_session) -> Response:
    record = find_issue(session, issue_id)
    if record is None:
        return redirect("/admin/issues", "No such issue")
    form = await read_form(request)
    source, preview_for = str(form.get("source", "")), str(form.get("preview_list", ""))[:200]
    try:
        update_issue(session, record, source)
    except IssueError as exc:
        record.source = source  # shown again in the editor with its problems; never committed
        return _issue_page(request, user, session, record, [str(p) for p in exc.problems], 400, preview_for)
    session.commit()
    return redirect(f"/admin/issues/{record.id}?{urlencode({'preview': preview_for})}", "Saved")
