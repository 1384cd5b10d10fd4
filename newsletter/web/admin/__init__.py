"""The admin in the browser: sign-in, dashboard, lists, subscribers, suppressions, issues and sends.

Pages call the same service and campaign functions as the CLI and the API; this file only translates forms to
calls and results to pages. Staff may work on issues and sends and read subscribers; the rest needs an admin.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer.db import utcnow
from mailer.models import IssueRecord
from newsletter.auth import Principal, create_api_token
from newsletter.models import ApiToken, User
from newsletter.web.admin import auth, dashboard, imports, issues, lists, subscribers, suppressions
from newsletter.web.admin.common import admin_router, page
from newsletter.web.admin.common import read_form as _form
from newsletter.web.admin.common import redirect as _redirect
from newsletter.web.csrf import verify_csrf
from newsletter.web.deps import db_session, page_admin, page_user
from subscribers import service
from subscribers.models import (
    MailingList,
)
from worker import sends
from worker.figures import send_figures
from worker.models import Send
from worker.stats import send_counters

legacy = admin_router()


@legacy.post("/issues/{issue_id}/test", dependencies=[Depends(verify_csrf)])
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


@legacy.post("/issues/{issue_id}/send", dependencies=[Depends(verify_csrf)])
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

@legacy.get("/sends/{send_id}", response_class=HTMLResponse)
def send_page(request: Request, send_id: int, user: Principal = Depends(page_user),
              session: Session = Depends(db_session)) -> HTMLResponse:
    send = session.get(Send, send_id)
    if send is None:
        return page(request, "lists.html", user, "dashboard", lists=[], flash="No such send.", flash_kind="error",
                    status_code=404)
    return page(request, "send.html", user, "dashboard", send=send, issue=session.get(IssueRecord, send.issue_id),
                mailing_list=session.get(MailingList, send.list_id), counts=send_counters(session, send_id),
                figures=send_figures(session, send_id), flash=request.query_params.get("flash"))


@legacy.get("/sends/{send_id}/progress.json")
def send_progress(send_id: int, user: Principal = Depends(page_user),
                  session: Session = Depends(db_session)) -> JSONResponse:
    send = session.get(Send, send_id)
    if send is None:
        return JSONResponse({"error": "No such send."}, status_code=404)
    return JSONResponse({"status": send.status.value, "reason": send.status_reason,
                         **send_counters(session, send_id)})


@legacy.post("/sends/{send_id}/{action}", dependencies=[Depends(verify_csrf)])
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

@legacy.get("/tokens", response_class=HTMLResponse)
def tokens_page(request: Request, user: Principal = Depends(page_admin),
                session: Session = Depends(db_session)) -> HTMLResponse:
    tokens = session.scalars(select(ApiToken).where(ApiToken.user_id == user.user_id)
                             .order_by(ApiToken.id.desc())).all()
    return page(request, "tokens.html", user, "tokens", tokens=tokens, flash=request.query_params.get("flash"))


@legacy.post("/tokens", response_class=HTMLResponse, dependencies=[Depends(verify_csrf)])
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


@legacy.post("/tokens/{token_id}/revoke", dependencies=[Depends(verify_csrf)])
def revoke_token(token_id: int, user: Principal = Depends(page_admin),
                 session: Session = Depends(db_session)) -> Response:
    found = session.get(ApiToken, token_id) if 0 < token_id < 2**62 else None
    if found is None or found.user_id != user.user_id:
        return _redirect("/admin/tokens", "No such token")
    found.revoked_at = found.revoked_at or utcnow()
    session.commit()
    return _redirect("/admin/tokens", "Revoked")


router = APIRouter()
for _resource in (auth.router, dashboard.router, lists.router, subscribers.router, imports.router,
                  suppressions.router, issues.router, legacy):
    router.include_router(_resource)
