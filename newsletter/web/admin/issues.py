"""The issue editor: the issues, a new one from Markdown (typed or uploaded), editing with a live phone and
desktop preview, and what the renderer warns about. Sending an issue is in admin/sends.py."""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy.orm import Session

from mailer.issue import IssueError, parse_issue
from mailer.models import IssueRecord
from mailer.render import RenderError, render_issue
from mailer.store import find_issue, recent_issues, save_issue, update_issue
from newsletter.auth import Principal
from newsletter.web.admin.common import admin_router, flash_message, page, redirect
from newsletter.web.csrf import verify_csrf
from newsletter.web.deps import db_session, page_user
from subscribers import audience, queries
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


@router.get("/issues", response_class=HTMLResponse)
def issues_page(request: Request, user: Principal = Depends(page_user),
                session: Session = db_session) -> HTMLResponse:
    return page(request, "issues.html", user, "issues", issues=recent_issues(session, SHOWN), template=NEW_ISSUE)


async def _source_from_form(request: Request) -> tuple[str, str]:
    form = await request.form()
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
                problems: list[str] | None = None, status_code: int = 200) -> HTMLResponse:
    warnings: list[str] = []
    try:
        warnings = render_issue(parse_issue(record.source, record.slug), force=True).warnings
    except (IssueError, RenderError) as exc:
        warnings = [str(exc)]
    return page(request, "issue.html", user, "issues", issue=record, preview_html=preview_html(record.html or ""),
                size=len((record.html or "").encode()), warnings=warnings, problems=problems,
                sends=reports.sends_of_issue(session, record.id), lists=queries.all_lists(session),
                segments=audience.segments_of(session),
                flash=flash_message(request), status_code=status_code)


@router.post("/issues/preview", dependencies=[Depends(verify_csrf)])
async def live_preview(request: Request, user: Principal = Depends(page_user)) -> JSONResponse:
    """Rendered as the editor types (the page's script posts here); errors come back located, for the editor."""
    source = str((await request.form()).get("source", ""))
    try:
        rendered = render_issue(parse_issue(source, "preview"), force=True)
    except IssueError as exc:
        return JSONResponse({"problems": [str(p) for p in exc.problems]}, status_code=422)
    except RenderError as exc:
        return JSONResponse({"problems": [str(exc)]}, status_code=422)
    return JSONResponse({"html": preview_html(rendered.html), "warnings": rendered.warnings,
                         "bytes": len(rendered.html.encode())})


@router.get("/issues/{issue_id}", response_class=HTMLResponse)
def issue_page(request: Request, issue_id: int, user: Principal = Depends(page_user),
               session: Session = db_session) -> HTMLResponse:
    record = find_issue(session, issue_id)
    if record is None:
        return page(request, "issues.html", user, "issues", issues=[], template=NEW_ISSUE, flash="No such issue.",
                    flash_kind="error", status_code=404)
    return _issue_page(request, user, session, record)


@router.post("/issues/{issue_id}", dependencies=[Depends(verify_csrf)])
async def edit_issue(request: Request, issue_id: int, user: Principal = Depends(page_user),
                     session: Session = db_session) -> Response:
    record = find_issue(session, issue_id)
    if record is None:
        return redirect("/admin/issues", "No such issue")
    source = str((await request.form()).get("source", ""))
    try:
        update_issue(session, record, source)
    except IssueError as exc:
        record.source = source  # shown again in the editor with its problems; never committed
        return _issue_page(request, user, session, record, [str(p) for p in exc.problems], 400)
    session.commit()
    return redirect(f"/admin/issues/{record.id}", "Saved")
