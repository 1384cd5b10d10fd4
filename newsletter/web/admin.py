"""The admin in the browser: sign-in, dashboard, lists, subscribers, suppressions, issues and sends.

Pages call the same service and campaign functions as the CLI and the API; this file only translates forms to
calls and results to pages. Staff may work on issues and sends and read subscribers; the rest needs an admin.
"""

from __future__ import annotations

import io
import re
import tempfile
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from mailer.db import utcnow
from mailer.issue import IssueError, parse_issue
from mailer.models import IssueRecord
from mailer.render import RenderError, render_issue
from mailer.settings import get_settings
from mailer.store import save_issue, store_rendered
from newsletter.auth import SESSION_COOKIE, Principal, authenticate, create_api_token, session_cookie
from newsletter.models import ApiToken, User
from newsletter.web import imports
from newsletter.web.csrf import verify_csrf
from newsletter.web.deps import db_session, page_admin, page_user
from newsletter.web.flash import read_flash, redirect_with_flash
from newsletter.web.ratelimit import limiter
from newsletter.web.templating import render_page
from subscribers import importer, service
from subscribers.models import (
    ConsentEvent,
    ConsentSource,
    ImportJob,
    MailingList,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
)
from worker import sends
from worker.figures import send_figures
from worker.models import Delivery, ProviderEvent, Send, SendStatus
from worker.stats import send_counters

router = APIRouter(prefix="/admin", include_in_schema=False)
PAGE_SIZE = 50
_WHOLE_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
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


def page(request: Request, name: str, user: Principal | None, nav: str = "", **context: Any) -> HTMLResponse:
    status = context.pop("status_code", 200)
    return render_page(request, f"admin/{name}", {"user": user, "nav": nav, **context}, status_code=status)


def _redirect(path: str, flash: str = "") -> RedirectResponse:
    return redirect_with_flash(path, flash)


async def _form(request: Request) -> dict[str, Any]:
    return dict(await request.form())


# Sign-in ------------------------------------------------------------------------------------------------------

@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next_path: str = Query("/admin", alias="next")) -> HTMLResponse:
    target = next_path if next_path.startswith("/admin") and not next_path.startswith("//") else "/admin"
    return page(request, "login.html", None, next=target)


@router.post("/login", dependencies=[Depends(verify_csrf)])
async def login(request: Request, session: Session = Depends(db_session)) -> Response:
    form = await _form(request)
    email, password = str(form.get("email", "")).strip().lower(), str(form.get("password", ""))
    target = str(form.get("next") or "/admin")
    target = target if target.startswith("/admin") and not target.startswith("//") else "/admin"
    ip = request.client.host if request.client else "?"
    settings = get_settings()
    allowed = (limiter().hit(f"login:ip:{ip}", settings.login_attempts_per_window * 3, 900)
               and limiter().hit(f"login:acct:{email}", settings.login_attempts_per_window, 900))
    if not allowed:
        return page(request, "login.html", None, error="Too many attempts. Wait 15 minutes and try again.",
                    next=target, status_code=429)
    user = authenticate(session, email, password)
    if user is None:
        return page(request, "login.html", None, error="Wrong email or password.", next=target, status_code=401)
    session.commit()
    response = RedirectResponse(target, status_code=303)
    secure = settings.session_cookie_secure
    if secure is None:
        secure = settings.base_url.startswith("https://")
    response.set_cookie(SESSION_COOKIE, session_cookie(user), httponly=True, samesite="lax", secure=secure,
                        max_age=12 * 3600, path="/")
    return response


@router.post("/logout", dependencies=[Depends(verify_csrf)])
def logout() -> Response:
    response = RedirectResponse("/admin/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# Dashboard ----------------------------------------------------------------------------------------------------

def _list_rows(session: Session) -> list[dict[str, Any]]:
    return [{"list": m, "counts": service.list_counts(session, m.id)}
            for m in session.scalars(select(MailingList).order_by(MailingList.name))]


def rates_chart(rows: list[tuple[str, dict[str, int]]]) -> str:
    """Inline SVG, server-rendered: delivered, hard-bounce and complaint rates per send (no JS, no libraries)."""
    if not rows:
        return '<p class="muted">No sends yet.</p>'
    width, height, left, top = 760, 200, 44, 10
    group = (width - left) / max(len(rows), 4)
    bar = max(6.0, min(28.0, group / 4))
    colors = {"delivered": "#047857", "bounced": "#d97706", "complained": "#b91c1c"}
    parts = [f'<svg role="img" aria-label="Delivery, bounce and complaint rates per send" viewBox="0 0 {width} '
             f'{height + top + 48}" width="100%" style="max-width:{width}px;font-family:inherit">']
    for share in (0, 0.25, 0.5, 0.75, 1):
        y, stroke = top + height * (1 - share), "#9ca3af" if share == 0 else "#e5e7eb"
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width}" y2="{y:.1f}" stroke="{stroke}"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end" fill="#6b7280">'
                     f"{share:.0%}</text>")
    for index, (label, figures) in enumerate(rows):
        sent = max(1, figures["sent"])
        values = {"delivered": figures["delivered"] / sent, "bounced": figures["bounced_hard"] / sent,
                  "complained": figures["complained"] / sent}
        x0 = left + index * group + group / 2 - 1.5 * bar
        for offset, (key, value) in enumerate(values.items()):
            h = max(1.0, min(1.0, value) * height)
            parts.append(f'<rect x="{x0 + offset * bar:.1f}" y="{top + height - h:.1f}" width="{bar - 2:.1f}" '
                         f'height="{h:.1f}" rx="2" fill="{colors[key]}"><title>{escape(label)}: {key} {value:.1%}'
                         "</title></rect>")
        parts.append(f'<text x="{x0 + 1.5 * bar:.1f}" y="{top + height + 16}" font-size="11" text-anchor="middle" '
                     f'fill="#374151">{escape(label)}</text>')
    for offset, (key, color) in enumerate(colors.items()):
        x = left + offset * 120
        parts.append(f'<rect x="{x}" y="{top + height + 32}" width="11" height="11" rx="2" fill="{color}"/>'
                     f'<text x="{x + 16}" y="{top + height + 42}" font-size="12" fill="#374151">{key}</text>')
    parts.append("</svg>")
    return "".join(parts)


@router.get("", response_class=HTMLResponse)
def dashboard(request: Request, user: Principal = Depends(page_user),
              session: Session = Depends(db_session)) -> HTMLResponse:
    recent = session.execute(select(Send, IssueRecord.slug, MailingList.slug).join(IssueRecord)
                             .join(MailingList).order_by(Send.id.desc()).limit(10)).all()
    sends = [{"send": s, "issue": issue, "list": slug, "counts": send_counters(session, s.id)}
             for s, issue, slug in recent]
    chart_rows = [(f"#{s.id}", send_figures(session, s.id)) for s, _i, _l in reversed(recent)
                  if s.status in (SendStatus.DONE, SendStatus.RUNNING, SendStatus.PAUSED)]
    return page(request, "dashboard.html", user, "dashboard", lists=_list_rows(session), sends=sends,
                chart=rates_chart(chart_rows), flash=read_flash(request))


# Lists --------------------------------------------------------------------------------------------------------

@router.get("/lists", response_class=HTMLResponse)
def lists_page(request: Request, user: Principal = Depends(page_user),
               session: Session = Depends(db_session)) -> HTMLResponse:
    return page(request, "lists.html", user, "lists", lists=_list_rows(session),
                flash=read_flash(request))


@router.post("/lists", dependencies=[Depends(verify_csrf)])
async def create_list(request: Request, user: Principal = Depends(page_admin),
                      session: Session = Depends(db_session)) -> Response:
    form = await _form(request)
    try:
        created = service.create_list(session, str(form.get("slug", "")), str(form.get("name", "")),
                                      double_opt_in=form.get("double_opt_in") == "1")
    except (service.ServiceError, service.InvalidEmail) as exc:
        return page(request, "lists.html", user, "lists", lists=_list_rows(session), flash=str(exc),
                    flash_kind="error", status_code=400)
    session.commit()
    return _redirect(f"/admin/lists/{created.slug}", "List created")


def _snippet(mailing_list: MailingList) -> str:
    base = get_settings().base_url.rstrip("/")
    return (f'<form method="post" action="{base}/lists/{mailing_list.slug}/subscribe">\n'
            f'  <label>Email <input type="email" name="email" required></label>\n'
            f'  <label>Name <input type="text" name="name"></label>\n'
            f'  <button type="submit">Subscribe to {escape(mailing_list.name)}</button>\n</form>\n'
            f"<!-- Cross-site posts get a page asking to confirm, so a CSRF token is not needed here. -->")


@router.get("/lists/{slug}", response_class=HTMLResponse)
def list_page(request: Request, slug: str, user: Principal = Depends(page_user),
              session: Session = Depends(db_session)) -> HTMLResponse:
    try:
        mailing_list = service.get_list(session, slug)
    except service.ServiceError as exc:
        return page(request, "lists.html", user, "lists", lists=_list_rows(session), flash=str(exc),
                    flash_kind="error", status_code=404)
    return page(request, "list.html", user, "lists", mailing_list=mailing_list, snippet=_snippet(mailing_list),
                counts=service.list_counts(session, mailing_list.id), flash=read_flash(request))


@router.post("/lists/{slug}", dependencies=[Depends(verify_csrf)])
async def edit_list(request: Request, slug: str, user: Principal = Depends(page_admin),
                    session: Session = Depends(db_session)) -> Response:
    try:
        mailing_list = service.get_list(session, slug)
    except service.ServiceError as exc:
        return page(request, "lists.html", user, "lists", lists=_list_rows(session), flash=str(exc),
                    flash_kind="error", status_code=404)
    form = await _form(request)
    addresses: dict[str, str | None] = {}
    for field in ("from_email", "reply_to"):
        value = str(form.get(field) or "").strip()
        try:
            addresses[field] = service.normalise_email(value, check_deliverability=False) if value else None
        except service.InvalidEmail as exc:
            return page(request, "list.html", user, "lists", mailing_list=mailing_list, snippet=_snippet(mailing_list),
                        counts=service.list_counts(session, mailing_list.id), flash=f"{field}: {exc}",
                        flash_kind="error", status_code=400)
    mailing_list.name = str(form.get("name") or mailing_list.name)[:200]
    mailing_list.from_name = str(form.get("from_name") or "")[:200] or None
    mailing_list.from_email = addresses["from_email"]
    mailing_list.reply_to = addresses["reply_to"]
    mailing_list.double_opt_in = form.get("double_opt_in") == "1"
    mailing_list.welcome_enabled = form.get("welcome_enabled") == "1"
    session.commit()
    return _redirect(f"/admin/lists/{slug}", "Saved")


# Subscribers --------------------------------------------------------------------------------------------------

@router.get("/subscribers", response_class=HTMLResponse)
def subscribers_page(request: Request, q: str = "", list_slug: str = Query("", alias="list"), status: str = "",
                     after: int = 0, user: Principal = Depends(page_user),
                     session: Session = Depends(db_session)) -> HTMLResponse:
    """Keyset pagination (id > after): constant cost per page at any table size, no COUNT(*) of everything."""
    query = select(Subscriber).where(Subscriber.erased_at.is_(None), Subscriber.id > after)
    if list_slug or status:
        conditions = [Subscription.subscriber_id == Subscriber.id]
        if list_slug:
            wanted = session.scalar(select(MailingList.id).where(MailingList.slug == list_slug))
            conditions.append(Subscription.list_id == (wanted or -1))
        if status in {s.value for s in SubscriptionStatus}:
            conditions.append(Subscription.status == SubscriptionStatus(status))
        query = query.where(select(Subscription.id).where(*conditions).exists())
    if q and _WHOLE_ADDRESS.match(q.strip()):  # the common case: one exact lookup on the unique index
        query = query.where(Subscriber.email == q.strip().lower())
    elif q:
        pattern = f"%{q.strip().lower()}%"
        query = query.where(or_(Subscriber.email.like(pattern), func.lower(Subscriber.name).like(pattern)))
    found = session.scalars(query.order_by(Subscriber.id).limit(PAGE_SIZE + 1)).all()
    more = len(found) > PAGE_SIZE
    found = found[:PAGE_SIZE]
    slugs = {m.id: m.slug for m in session.scalars(select(MailingList))}
    subs = session.scalars(select(Subscription).where(Subscription.subscriber_id.in_([s.id for s in found]))).all()
    by_subscriber: dict[int, list[dict[str, str]]] = {}
    for sub in subs:
        by_subscriber.setdefault(sub.subscriber_id, []).append({"slug": slugs[sub.list_id],
                                                                "status": sub.status.value})
    rows = [{"subscriber": s, "subscriptions": by_subscriber.get(s.id, [])} for s in found]
    next_after = found[-1].id if more and found else None
    next_url = ("/admin/subscribers?" + urlencode({"q": q, "list": list_slug, "status": status, "after": next_after})
                if next_after else "")
    return page(request, "subscribers.html", user, "subscribers", rows=rows, q=q, list_slug=list_slug, status=status,
                lists=session.scalars(select(MailingList)).all(), statuses=[s.value for s in SubscriptionStatus],
                next_after=next_after, next_url=next_url)


@router.get("/subscribers/{subscriber_id}", response_class=HTMLResponse)
def subscriber_page(request: Request, subscriber_id: int, user: Principal = Depends(page_user),
                    session: Session = Depends(db_session)) -> HTMLResponse:
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        return page(request, "lists.html", user, "subscribers", lists=[], flash="No such subscriber.",
                    flash_kind="error", status_code=404)
    lists = {m.id: m for m in session.scalars(select(MailingList))}
    subscriptions = [{"list": lists[s.list_id], "status": s.status.value} for s in session.scalars(
        select(Subscription).where(Subscription.subscriber_id == subscriber_id))]
    consent = session.scalars(select(ConsentEvent).where(ConsentEvent.subscriber_id == subscriber_id)
                              .order_by(ConsentEvent.at.desc(), ConsentEvent.id.desc()).limit(200)).all()
    deliveries = session.scalars(select(Delivery).where(Delivery.subscriber_id == subscriber_id)
                                 .order_by(Delivery.id.desc()).limit(100)).all()
    events = session.scalars(select(ProviderEvent).where(ProviderEvent.email == subscriber.email)
                             .order_by(ProviderEvent.id.desc()).limit(100)).all()
    return page(request, "subscriber.html", user, "subscribers", subscriber=subscriber, subscriptions=subscriptions,
                consent=consent, deliveries=deliveries, events=events,
                list_names={k: v.name for k, v in lists.items()},
                suppressed=service.is_suppressed(session, subscriber.email), flash=read_flash(request))


@router.post("/subscribers/{subscriber_id}/action", dependencies=[Depends(verify_csrf)])
async def subscriber_action(request: Request, subscriber_id: int, user: Principal = Depends(page_admin),
                            session: Session = Depends(db_session)) -> Response:
    form = await _form(request)
    action = str(form.get("action", ""))
    list_id = int(str(form.get("list_id") or 0) or 0) or None
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        return _redirect("/admin/subscribers", "No such subscriber")
    detail = {"by": user.email}
    if action == "unsubscribe":
        service.unsubscribe(session, subscriber_id, list_id, source=ConsentSource.ADMIN, detail=detail)
    elif action == "resubscribe" and list_id:
        try:
            service.resubscribe(session, subscriber_id, list_id, source=ConsentSource.ADMIN)
        except service.NotSubscribed as exc:  # only a list they had; the admin does not invent consent either
            return _redirect(f"/admin/subscribers/{subscriber_id}", str(exc))
    elif action == "suppress":
        service.suppress(session, subscriber.email, SuppressionReason.MANUAL, source=ConsentSource.ADMIN,
                         note=f"by {user.email}")
    elif action == "erase" and form.get("confirm") == "yes":
        service.erase(session, subscriber_id, source=ConsentSource.ADMIN)
        session.commit()
        return _redirect("/admin/subscribers", "Erased")
    session.commit()
    return _redirect(f"/admin/subscribers/{subscriber_id}", "Done")


@router.get("/export")
def export(list_slug: str = Query(..., alias="list"), user: Principal = Depends(page_user),
           session: Session = Depends(db_session)) -> Response:
    buffer = io.StringIO()
    try:
        importer.export_csv(session, list_slug, buffer)
    except service.ServiceError as exc:
        return JSONResponse({"error": str(exc)}, status_code=404)
    return StreamingResponse(iter([buffer.getvalue()]), media_type="text/csv",
                             headers={"Content-Disposition": f'attachment; filename="{list_slug}.csv"'})


@router.get("/import", response_class=HTMLResponse)
def import_page(request: Request, list_slug: str = Query("", alias="list"), user: Principal = Depends(page_admin),
                session: Session = Depends(db_session)) -> HTMLResponse:
    return page(request, "import.html", user, "subscribers", lists=session.scalars(select(MailingList)).all(),
                list_slug=list_slug)


@router.post("/import", dependencies=[Depends(verify_csrf)])
async def import_upload(request: Request, user: Principal = Depends(page_admin),
                        session: Session = Depends(db_session)) -> Response:
    form = await request.form()
    upload = form.get("file")
    lists = session.scalars(select(MailingList)).all()
    list_slug = str(form.get("list", ""))
    confirmed, consent_source = form.get("confirmed") == "1", str(form.get("consent_source", "")).strip()
    problem = ("Choose a CSV file." if upload is None or isinstance(upload, str) else
               "Say where these people consented (consent source)." if confirmed and not consent_source else
               "Choose a list." if list_slug not in {m.slug for m in lists} else "")
    if problem or upload is None or isinstance(upload, str):
        return page(request, "import.html", user, "subscribers", lists=lists, list_slug=list_slug, flash=problem,
                    flash_kind="error", status_code=400)
    folder = Path(get_settings().data_dir) / "imports"
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".csv", delete=False) as handle:
        while chunk := await upload.read(1 << 20):
            handle.write(chunk)
        path = Path(handle.name)
    key = imports.start(path, list_slug, confirmed=confirmed, consent_source=consent_source)
    return _redirect(f"/admin/import/run/{key}")


@router.get("/import/run/{key}", response_class=HTMLResponse)
def import_status(request: Request, key: str, user: Principal = Depends(page_admin),
                  session: Session = Depends(db_session)) -> HTMLResponse:
    """Refreshes itself while the import runs (no JavaScript needed), then shows the result."""
    state = imports.progress(key)
    lists = session.scalars(select(MailingList)).all()
    if state is None:
        return page(request, "import.html", user, "subscribers", lists=lists, flash_kind="error", status_code=404,
                    flash="This import is unknown here (it may run in another web process); see the list's counts.")
    return page(request, "import.html", user, "subscribers", lists=lists, list_slug=state.list_slug, state=state,
                result=state.result, running=not state.done.is_set(), flash=state.error or None,
                flash_kind="error" if state.error else None)


@router.get("/import/{job_id}/report")
def import_report(job_id: int, user: Principal = Depends(page_admin),
                  session: Session = Depends(db_session)) -> Response:
    job = session.get(ImportJob, job_id)
    if job is None or not job.report_path or not Path(job.report_path).exists():
        return JSONResponse({"error": "No report for this import."}, status_code=404)
    return FileResponse(job.report_path, media_type="text/csv", filename=f"import-{job_id}-report.csv")


# Suppressions (admins only) -----------------------------------------------------------------------------------

@router.get("/suppressions", response_class=HTMLResponse)
def suppressions_page(request: Request, user: Principal = Depends(page_admin),
                      session: Session = Depends(db_session)) -> HTMLResponse:
    rows = session.scalars(select(Suppression).order_by(Suppression.id.desc()).limit(500)).all()
    return page(request, "suppressions.html", user, "suppressions", rows=rows,
                flash=read_flash(request))


@router.post("/suppressions", dependencies=[Depends(verify_csrf)])
async def suppressions_change(request: Request, user: Principal = Depends(page_admin),
                              session: Session = Depends(db_session)) -> Response:
    form = await _form(request)
    try:
        address = service.normalise_email(str(form.get("email", "")), check_deliverability=False)
    except service.InvalidEmail as exc:
        return _redirect("/admin/suppressions", str(exc))
    note = f"{form.get('note', '')} (by {user.email})"
    if form.get("action") == "remove":
        service.unsuppress(session, address, source=ConsentSource.ADMIN, note=note)
    else:
        service.suppress(session, address, SuppressionReason.MANUAL, source=ConsentSource.ADMIN, note=note)
    session.commit()
    return _redirect("/admin/suppressions", "Saved")


# Issues -------------------------------------------------------------------------------------------------------

@router.get("/issues", response_class=HTMLResponse)
def issues_page(request: Request, user: Principal = Depends(page_user),
                session: Session = Depends(db_session)) -> HTMLResponse:
    issues = session.scalars(select(IssueRecord).order_by(IssueRecord.updated_at.desc()).limit(100)).all()
    return page(request, "issues.html", user, "issues", issues=issues, template=NEW_ISSUE)


async def _source_from_form(request: Request) -> tuple[str, str]:
    form = await request.form()
    upload = form.get("file")
    if upload is not None and not isinstance(upload, str) and upload.filename:
        return (await upload.read()).decode("utf-8", errors="replace"), upload.filename
    return str(form.get("source", "")), "issue.md"


@router.post("/issues", dependencies=[Depends(verify_csrf)])
async def create_issue(request: Request, user: Principal = Depends(page_user),
                       session: Session = Depends(db_session)) -> Response:
    source, filename = await _source_from_form(request)
    try:
        record = save_issue(session, source, filename=filename, force=True)
    except IssueError as exc:
        issues = session.scalars(select(IssueRecord).order_by(IssueRecord.updated_at.desc()).limit(100)).all()
        return page(request, "issues.html", user, "issues", issues=issues, source=source, template=NEW_ISSUE,
                    problems=[str(p) for p in exc.problems], status_code=400)
    session.commit()
    return _redirect(f"/admin/issues/{record.id}", "Saved")


def _issue_page(request: Request, user: Principal, session: Session, record: IssueRecord,
                problems: list[str] | None = None, status_code: int = 200, flash: str | None = None) -> HTMLResponse:
    warnings: list[str] = []
    try:
        warnings = render_issue(parse_issue(record.source, record.slug), force=True).warnings
    except (IssueError, RenderError) as exc:
        warnings = [str(exc)]
    preview = preview_html(record.html or "")
    sends = session.scalars(select(Send).where(Send.issue_id == record.id).order_by(Send.id.desc())).all()
    return page(request, "issue.html", user, "issues", issue=record, preview_html=preview,
                size=len((record.html or "").encode()), warnings=warnings, problems=problems, sends=sends,
                lists=session.scalars(select(MailingList).order_by(MailingList.name)).all(),
                flash=flash or read_flash(request), status_code=status_code)


def preview_html(html: str) -> str:
    """What the preview iframes show: a sample name, and links that do not pretend to work."""
    return html.replace("__NLH_NAME__", "Ada").replace("__NLH_", "#__NLH_")


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
               session: Session = Depends(db_session)) -> HTMLResponse:
    record = session.get(IssueRecord, issue_id)
    if record is None:
        return page(request, "issues.html", user, "issues", issues=[], template=NEW_ISSUE, flash="No such issue.",
                    flash_kind="error", status_code=404)
    return _issue_page(request, user, session, record)


@router.post("/issues/{issue_id}", dependencies=[Depends(verify_csrf)])
async def edit_issue(request: Request, issue_id: int, user: Principal = Depends(page_user),
                     session: Session = Depends(db_session)) -> Response:
    record = session.get(IssueRecord, issue_id)
    if record is None:
        return _redirect("/admin/issues", "No such issue")
    source = str((await request.form()).get("source", ""))
    try:
        issue = parse_issue(source, record.slug)
        rendered = render_issue(issue, force=True)
    except IssueError as exc:
        record.source = source
        return _issue_page(request, user, session, record, [str(p) for p in exc.problems], 400)
    if issue.slug != record.slug:
        record.slug = issue.slug
    store_rendered(session, issue, rendered, source)
    session.commit()
    return _redirect(f"/admin/issues/{record.id}", "Saved")


@router.post("/issues/{issue_id}/test", dependencies=[Depends(verify_csrf)])
async def send_test(request: Request, issue_id: int, user: Principal = Depends(page_user),
                    session: Session = Depends(db_session)) -> Response:
    to = str((await request.form()).get("to", "")).strip()
    if not user.is_admin and to.lower() != user.email:
        return _redirect(f"/admin/issues/{issue_id}", "Staff send tests to their own address only.")
    try:
        result = sends.send_test(session, issue_id, to)
    except (sends.SendError, service.InvalidEmail) as exc:
        return _redirect(f"/admin/issues/{issue_id}", str(exc))
    return _redirect(f"/admin/issues/{issue_id}", f"Test sent to {to}" if result.ok else f"Test failed: "
                                                                                        f"{result.error}")


@router.post("/issues/{issue_id}/send", dependencies=[Depends(verify_csrf)])
async def send_issue(request: Request, issue_id: int, user: Principal = Depends(page_user),
                     session: Session = Depends(db_session)) -> Response:
    form = await _form(request)
    at = str(form.get("at") or "")
    try:
        mailing_list = service.get_list(session, str(form.get("list", "")))
        scheduled = datetime.fromisoformat(at).replace(tzinfo=UTC) if at else None
        options = sends.SendOptions(scheduled_at=scheduled, allow_resend=form.get("allow_resend") == "1",
                                    created_by=user.email)
        send_id = sends.create(session, issue_id, mailing_list.id, options).id
        session.commit()
    except (sends.SendError, service.ServiceError, ValueError) as exc:
        session.rollback()
        return _redirect(f"/admin/issues/{issue_id}", str(exc))
    return _redirect(f"/admin/sends/{send_id}", "Scheduled" if at else "Sending")


# Sends --------------------------------------------------------------------------------------------------------

@router.get("/sends/{send_id}", response_class=HTMLResponse)
def send_page(request: Request, send_id: int, user: Principal = Depends(page_user),
              session: Session = Depends(db_session)) -> HTMLResponse:
    send = session.get(Send, send_id)
    if send is None:
        return page(request, "lists.html", user, "dashboard", lists=[], flash="No such send.", flash_kind="error",
                    status_code=404)
    return page(request, "send.html", user, "dashboard", send=send, issue=session.get(IssueRecord, send.issue_id),
                mailing_list=session.get(MailingList, send.list_id), counts=send_counters(session, send_id),
                figures=send_figures(session, send_id), flash=read_flash(request))


@router.get("/sends/{send_id}/progress.json")
def send_progress(send_id: int, user: Principal = Depends(page_user),
                  session: Session = Depends(db_session)) -> JSONResponse:
    send = session.get(Send, send_id)
    if send is None:
        return JSONResponse({"error": "No such send."}, status_code=404)
    return JSONResponse({"status": send.status.value, "reason": send.status_reason,
                         **send_counters(session, send_id)})


@router.post("/sends/{send_id}/{action}", dependencies=[Depends(verify_csrf)])
def send_action(send_id: int, action: str, user: Principal = Depends(page_user),
                session: Session = Depends(db_session)) -> Response:
    try:
        sends.control(session, send_id, sends.SendAction(action), user.email)
        session.commit()
    except ValueError as exc:  # an unknown action, or a refusal (SendError is a ValueError)
        session.rollback()
        return _redirect(f"/admin/sends/{send_id}", str(exc) if isinstance(exc, sends.SendError) else "Unknown action")
    return _redirect(f"/admin/sends/{send_id}", "Done")


# API tokens (admins) ------------------------------------------------------------------------------------------

@router.get("/tokens", response_class=HTMLResponse)
def tokens_page(request: Request, user: Principal = Depends(page_admin),
                session: Session = Depends(db_session)) -> HTMLResponse:
    tokens = session.scalars(select(ApiToken).where(ApiToken.user_id == user.user_id)
                             .order_by(ApiToken.id.desc())).all()
    return page(request, "tokens.html", user, "tokens", tokens=tokens, flash=read_flash(request))


@router.post("/tokens", response_class=HTMLResponse, dependencies=[Depends(verify_csrf)])
async def create_token(request: Request, user: Principal = Depends(page_admin),
                       session: Session = Depends(db_session)) -> HTMLResponse:
    name = str((await request.form()).get("name", "")).strip() or "token"
    owner = session.get(User, user.user_id)
    assert owner is not None
    token = create_api_token(session, owner, name)
    session.commit()
    tokens = session.scalars(select(ApiToken).where(ApiToken.user_id == user.user_id)
                             .order_by(ApiToken.id.desc())).all()
    return page(request, "tokens.html", user, "tokens", tokens=tokens, new_token=token)


@router.post("/tokens/{token_id}/revoke", dependencies=[Depends(verify_csrf)])
def revoke_token(token_id: int, user: Principal = Depends(page_admin),
                 session: Session = Depends(db_session)) -> Response:
    found = session.get(ApiToken, token_id) if 0 < token_id < 2**62 else None
    if found is None or found.user_id != user.user_id:
        return _redirect("/admin/tokens", "No such token")
    found.revoked_at = found.revoked_at or utcnow()
    session.commit()
    return _redirect("/admin/tokens", "Revoked")
