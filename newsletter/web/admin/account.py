"""One's own account (everyone signed in): see and end one's sessions, sign out everywhere else, change one's
password. Every change is a CSRF-checked form post calling newsletter.accounts / newsletter.auth.
"""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from mailer.settings import get_settings
from newsletter import accounts
from newsletter.auth import (
    AuthError,
    Principal,
    open_sessions,
    revoke_sessions,
    set_password,
    start_session,
    verify_password,
)
from newsletter.models import User
from newsletter.web.admin.auth import session_response
from newsletter.web.admin.common import admin_router, flash_message, page, read_form, redirect
from newsletter.web.csrf import verify_csrf
from newsletter.web.deps import ACCOUNT_PAGE, db_session, page_user
from newsletter.web.flash import flash_url
from newsletter.web.ratelimit import LoginThrottle

router = admin_router()


def _account_page(request: Request, user: Principal, session: Session, **context: object) -> HTMLResponse:
    flash = context.pop("flash", None) or flash_message(request)
    if user.must_change_password and not flash:
        flash = "Choose your own password to continue."
    return page(request, "account.html", user, "account", sessions=open_sessions(session, user.user_id),
                current=user.session_id, flash=flash, **context)


@router.get("/account", response_class=HTMLResponse)
def account_page(request: Request, user: Principal = Depends(page_user),
                 session: Session = db_session) -> HTMLResponse:
    return _account_page(request, user, session)


@router.post("/account/sessions/{session_id}/end", dependencies=[Depends(verify_csrf)])
def end_own_session(session_id: int, user: Principal = Depends(page_user),
                    session: Session = db_session) -> Response:
    try:
        accounts.revoke_session(session, session_id, user.user_id, "ended by its owner")
    except AuthError as exc:
        return redirect(ACCOUNT_PAGE, str(exc))
    session.commit()
    return redirect("/admin/login" if session_id == user.session_id else ACCOUNT_PAGE, "Session ended")


@router.post("/account/signout-others", dependencies=[Depends(verify_csrf)])
def sign_out_everywhere_else(user: Principal = Depends(page_user),
                             session: Session = db_session) -> Response:
    ended = revoke_sessions(session, user.user_id, "signed out everywhere", keep=user.session_id)
    session.commit()
    return redirect(ACCOUNT_PAGE, f"Signed out of {ended} other session(s)")


@router.post("/account/password", dependencies=[Depends(verify_csrf)])
async def change_own_password(request: Request, user: Principal = Depends(page_user),
                              session: Session = db_session) -> Response:
    """Needs the current password (a borrowed session alone must not take the account over), throttled like
    sign-in. Every session ends, this browser gets a fresh one."""
    form = await read_form(request)
    current, new, again = (str(form.get(k, "")) for k in ("current", "password", "confirm"))
    account = session.get(User, user.user_id)
    assert account is not None  # page_user found it active a moment ago
    client = request.client.host if request.client else "?"
    throttle = LoginThrottle(client, account.email, get_settings().login_attempts_per_window)
    if not throttle.allowed():
        return _account_page(request, user, session, flash="Too many attempts. Wait 15 minutes and try again.",
                             flash_kind="error", status_code=429)
    if not verify_password(account, current):
        return _account_page(request, user, session, flash="The current password is wrong.", flash_kind="error",
                             status_code=400)
    throttle.succeeded()
    if new != again:
        return _account_page(request, user, session, flash="The two new passwords differ.", flash_kind="error",
                             status_code=400)
    try:
        set_password(session, account, new)
    except AuthError as exc:
        return _account_page(request, user, session, flash=str(exc), flash_kind="error", status_code=400)
    cookie = start_session(session, account, client, request.headers.get("user-agent"))
    session.commit()
    return session_response(flash_url(ACCOUNT_PAGE, "Password changed"), cookie)

