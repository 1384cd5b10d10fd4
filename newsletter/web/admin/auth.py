"""Signing in and out of the admin: a throttled password check, then a server-side session named by a signed
cookie; signing out ends the session."""

from __future__ import annotations

from enum import StrEnum

from fastapi import Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from mailer.settings import get_settings
from newsletter.auth import SESSION_COOKIE, SESSION_MAX_AGE_S, authenticate, end_session, start_session
from newsletter.web.admin.common import admin_router, page, read_form
from newsletter.web.csrf import verify_csrf
from newsletter.web.deps import ACCOUNT_PAGE, db_session
from newsletter.web.ratelimit import LoginThrottle

router = admin_router()


def _safe_target(target: str) -> str:
    """Only a page of the admin: a `next` of //evil.example or https://... would make sign-in an open redirect."""
    return target if target.startswith("/admin") and not target.startswith("//") else "/admin"


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next_path: str = Query("/admin", alias="next")) -> HTMLResponse:
    return page(request, "login.html", None, next=_safe_target(next_path))


@router.post("/login", dependencies=[Depends(verify_csrf)])
async def login(request: Request, session: Session = db_session) -> Response:
    form = await read_form(request)
    email, password = str(form.get("email", "")).strip().lower(), str(form.get("password", ""))
    target = _safe_target(str(form.get("next") or "/admin"))
    ip = request.client.host if request.client else "?"
    # The throttle, the password hash (argon2: tens of ms of CPU, on purpose) and the session's row, off the event
    # loop: a flood of guesses must not stall every other page this process serves.
    outcome = await run_in_threadpool(_sign_in, session, email, password, ip, request.headers.get("user-agent"))
    if outcome == SignIn.THROTTLED:
        return page(request, "login.html", None, error="Too many attempts. Wait 15 minutes and try again.",
                    next=target, status_code=429)
    if outcome == SignIn.REFUSED:
        return page(request, "login.html", None, error="Wrong email or password.", next=target, status_code=401)
    cookie, must_change_password = outcome
    return session_response(target if not must_change_password else ACCOUNT_PAGE, cookie)


class SignIn(StrEnum):
    THROTTLED = "throttled"
    REFUSED = "refused"


def _sign_in(session: Session, email: str, password: str, ip: str,
             user_agent: str | None) -> SignIn | tuple[str, bool]:
    """The throttled password check, and for the right password a new session: its cookie, and whether the password
    must be changed first."""
    throttle = LoginThrottle(ip, email, get_settings().login_attempts_per_window)
    if not throttle.allowed():
        return SignIn.THROTTLED
    user = authenticate(session, email, password)
    if user is None:
        return SignIn.REFUSED
    throttle.succeeded()
    cookie = start_session(session, user, ip, user_agent)
    session.commit()
    return cookie, user.must_change_password


def session_response(target: str, cookie: str) -> RedirectResponse:
    """A redirect that hands the browser its session cookie (at sign-in and after a password change)."""
    settings = get_settings()
    response = RedirectResponse(target, status_code=303)
    secure = settings.session_cookie_secure
    if secure is None:
        secure = settings.base_url.startswith("https://")
    response.set_cookie(SESSION_COOKIE, cookie, httponly=True, samesite="lax", secure=secure,
                        max_age=SESSION_MAX_AGE_S, path="/")
    return response


@router.post("/logout", dependencies=[Depends(verify_csrf)])
def logout(request: Request, session: Session = db_session) -> Response:
    """Ends the session's row, so a copy of the cookie kept anywhere stops working too."""
    end_session(session, request.cookies.get(SESSION_COOKIE))
    session.commit()
    response = RedirectResponse("/admin/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
