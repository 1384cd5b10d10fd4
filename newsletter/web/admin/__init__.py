"""The admin in the browser: sign-in, dashboard, lists, subscribers, suppressions, issues and sends.

Pages call the same service and campaign functions as the CLI and the API; this file only translates forms to
calls and results to pages. Staff may work on issues and sends and read subscribers; the rest needs an admin.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer.db import utcnow
from newsletter.auth import Principal, create_api_token
from newsletter.models import ApiToken, User
from newsletter.web.admin import auth, dashboard, imports, issues, lists, sends, subscribers, suppressions
from newsletter.web.admin.common import admin_router, page
from newsletter.web.admin.common import redirect as _redirect
from newsletter.web.csrf import verify_csrf
from newsletter.web.deps import db_session, page_admin

legacy = admin_router()


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
                  suppressions.router, issues.router, sends.router, legacy):
    router.include_router(_resource)
