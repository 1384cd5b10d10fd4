"""API tokens (admins): an admin's own tokens, a new one shown exactly once, and revoking one."""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from newsletter.auth import AuthError, Principal, create_token_for, revoke_token, tokens_of
from newsletter.web.admin.common import admin_router, flash_message, page, redirect
from newsletter.web.csrf import verify_csrf
from newsletter.web.deps import db_session, page_admin
from newsletter.web.forms import read_form

router = admin_router()


@router.get("/tokens", response_class=HTMLResponse)
def tokens_page(request: Request, user: Principal = Depends(page_admin),
                session: Session = db_session) -> HTMLResponse:
    return page(request, "tokens.html", user, "tokens", tokens=tokens_of(session, user.user_id),
                flash=flash_message(request))


@router.post("/tokens", response_class=HTMLResponse, dependencies=[Depends(verify_csrf)])
async def create_token(request: Request, user: Principal = Depends(page_admin),
                       session: Session = db_session) -> HTMLResponse:
    name = str((await read_form(request)).get("name", "")).strip() or "token"
    token = create_token_for(session, user.user_id, name)
    session.commit()
    return page(request, "tokens.html", user, "tokens", tokens=tokens_of(session, user.user_id), new_token=token)


@router.post("/tokens/{token_id}/revoke", dependencies=[Depends(verify_csrf)])
def revoke(token_id: int, user: Principal = Depends(page_admin), session: Session = db_session) -> Response:
    try:
        revoke_token(session, token_id, user.user_id)
    except AuthError:
        return redirect("/admin/tokens", "No such token")
    session.commit()
    return redirect("/admin/tokens", "Revoked")
