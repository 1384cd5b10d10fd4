"""Sends from the admin: a test copy to staff, sending (or scheduling) an issue to a list, a send's live page and
its controls. Every change goes through worker.sends, the same as the CLI's and the API's."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy.orm import Session

from newsletter.auth import Principal
from newsletter.web.admin.chart import timeline_chart
from newsletter.web.admin.common import admin_router, flash_message, page, read_form, redirect
from newsletter.web.csrf import verify_csrf
from newsletter.web.deps import db_session, page_user
from subscribers import csvsafe, mailing_lists, service
from worker import reports, sends
from worker.engagement_report import report_csv_rows, send_report

router = admin_router()


@router.post("/issues/{issue_id}/test", dependencies=[Depends(verify_csrf)])
async def send_test(request: Request, issue_id: int, user: Principal = Depends(page_user),
                    session: Session = db_session) -> Response:
    form = await read_form(request)
    to, slug = str(form.get("to", "")).strip(), str(form.get("list") or "")
    if not user.is_admin and to.lower() != user.email:
        return redirect(f"/admin/issues/{issue_id}", "Staff send tests to their own address only.")
    try:
        list_id = mailing_lists.get_list(session, slug).id if slug else None  # its language and brand
        result = sends.send_test(session, issue_id, to, list_id=list_id)
    except (sends.SendError, service.ServiceError, service.InvalidEmail) as exc:
        return redirect(f"/admin/issues/{issue_id}", str(exc))
    return redirect(f"/admin/issues/{issue_id}", f"Test sent to {to}" if result.ok else f"Test failed: {result.error}")


@router.post("/issues/{issue_id}/send", dependencies=[Depends(verify_csrf)])
async def send_issue(request: Request, issue_id: int, user: Principal = Depends(page_user),
                     session: Session = db_session) -> Response:
    form = await read_form(request)
    at = str(form.get("at") or "")
    try:
        mailing_list = mailing_lists.get_list(session, str(form.get("list", "")))
        scheduled = datetime.fromisoformat(at).replace(tzinfo=UTC) if at else None
        options = sends.SendOptions(scheduled_at=scheduled, allow_resend=form.get("allow_resend") == "1",
                                    created_by=user.email, segment=str(form.get("segment") or "") or None)
        send_id = sends.create(session, issue_id, mailing_list.id, options).id
        session.commit()
    except (sends.SendError, service.ServiceError, ValueError) as exc:
        session.rollback()
        return redirect(f"/admin/issues/{issue_id}", str(exc))
    return redirect(f"/admin/sends/{send_id}", "Scheduled" if at else "Sending")


@router.get("/sends/{send_id}", response_class=HTMLResponse)
def send_page(request: Request, send_id: int, user: Principal = Depends(page_user),
              session: Session = db_session) -> HTMLResponse:
    report = reports.send_detail(session, send_id)
    if report is None:
        return page(request, "lists.html", user, "dashboard", lists=[], flash="No such send.", flash_kind="error",
                    status_code=404)
    engagement = send_report(session, send_id)
    return page(request, "send.html", user, "dashboard", send=report.send, issue=report.issue,
                mailing_list=report.mailing_list, counts=report.counts, figures=report.figures,
                engagement=engagement, timeline=timeline_chart(engagement["timeline"]) if engagement else "",
                flash=flash_message(request))


@router.get("/sends/{send_id}/report.csv")
def send_report_csv(send_id: int, user: Principal = Depends(page_user),
                    session: Session = db_session) -> Response:
    """The engagement report as a spreadsheet: figures, then one row per link."""
    engagement = send_report(session, send_id)
    if engagement is None:
        return Response("No such send.", status_code=404, media_type="text/plain")
    out = io.StringIO()
    csvsafe.writer(out).writerows(report_csv_rows(engagement))
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="send-{send_id}-report.csv"'})


@router.get("/sends/{send_id}/progress.json")
def send_progress(send_id: int, user: Principal = Depends(page_user),
                  session: Session = db_session) -> JSONResponse:
    progress = reports.send_progress(session, send_id)
    if progress is None:
        return JSONResponse({"error": "No such send."}, status_code=404)
    return JSONResponse({"status": progress.status.value, "reason": progress.reason, **progress.counts})


@router.post("/sends/{send_id}/{action}", dependencies=[Depends(verify_csrf)])
def send_action(send_id: int, action: str, user: Principal = Depends(page_user),
                session: Session = db_session) -> Response:
    try:
        sends.control(session, send_id, sends.SendAction(action), user.email)
        session.commit()
    except ValueError as exc:  # an unknown action, or a refusal (SendError is a ValueError)
        session.rollback()
        return redirect(f"/admin/sends/{send_id}", str(exc) if isinstance(exc, sends.SendError) else "Unknown action")
    return redirect(f"/admin/sends/{send_id}", "Done")
