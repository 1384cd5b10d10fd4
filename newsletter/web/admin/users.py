"""Other people's accounts (admins only): every user with their open sessions and live tokens; change a role,
reset a password (a one-time one, shown once), deactivate or activate, end sessions, revoke tokens.

Every change is a CSRF-checked form post calling newsletter.accounts, the same functions as `newsletter users ...`,
so the rules (the last active admin stays; deactivation ends every credential at once) are the CLI's. A staff
user gets 403 on every route here.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from newsletter import accounts
from newsletter.auth import MAX_ID, AuthError, Principal, open_sessions, revoke_sessions, revoke_token, tokens_of
from newsletter.models import Role, User
from newsletter.web.admin.common import admin_router, flash_message, page, read_form, redirect
from newsletter.web.csrf import verify_csrf
from newsletter.web.deps import db_session, page_admin

router = admin_router()


@router.get("/users", response_class=HTMLResponse)
def users_page(request: Request, user: Principal = Depends(page_admin),
               session: Session = db_session) -> HTMLResponse:
    return page(request, "users.html", user, "users", rows=accounts.overview(session),
                flash=flash_message(request))


def _user_page(request: Request, user: Principal, session: Session, account: User, **context: object) -> HTMLResponse:
    return page(request, "user.html", user, "users", account=account, roles=[r.value for r in Role],
                sessions=open_sessions(session, account.id), tokens=tokens_of(session, account.id),
                flash=context.pop("flash", None) or flash_message(request), **context)


@router.get("/users/{user_id}", response_class=HTMLResponse)
def user_page(request: Request, user_id: int, user: Principal = Depends(page_admin),
              session: Session = db_session) -> Response:
    try:
        account = accounts.get_user(session, user_id)
    except AuthError as exc:
        return redirect("/admin/users", str(exc))
    return _user_page(request, user, session, account)


def _change(session: Session, user_id: int, change: Callable[[User], str]) -> Response:
    """One account change in one transaction; a refusal rolls back and comes back as the page's message."""
    try:
        account = accounts.get_user(session, user_id)
        message = change(account)
        session.commit()
    except AuthError as exc:
        session.rollback()
        return redirect(f"/admin/users/{user_id}" if 0 < user_id < MAX_ID else "/admin/users", str(exc))
    return redirect(f"/admin/users/{user_id}", message)


@router.post("/users/{user_id}/role", dependencies=[Depends(verify_csrf)])
async def change_role(request: Request, user_id: int, user: Principal = Depends(page_admin),
                      session: Session = db_session) -> Response:
    wanted = str((await read_form(request)).get("role", ""))
    if wanted not in {r.value for r in Role}:
        return redirect(f"/admin/users/{user_id}", "Unknown role")

    def change(account: User) -> str:
        accounts.set_role(session, account, Role(wanted))
        return f"{account.email} is now {wanted}"
    return _change(session, user_id, change)


@router.post("/users/{user_id}/deactivate", dependencies=[Depends(verify_csrf)])
def deactivate(user_id: int, user: Principal = Depends(page_admin),
               session: Session = db_session) -> Response:
    def change(account: User) -> str:
        accounts.deactivate(session, account)
        return "Deactivated: sessions ended, API tokens revoked"
    return _change(session, user_id, change)


@router.post("/users/{user_id}/activate", dependencies=[Depends(verify_csrf)])
def activate(user_id: int, user: Principal = Depends(page_admin),
             session: Session = db_session) -> Response:
    def change(account: User) -> str:
        accounts.activate(session, account)
        return "Activated"
    return _change(session, user_id, change)


@router.post("/users/{user_id}/signout", dependencies=[Depends(verify_csrf)])
def end_all_sessions(user_id: int, user: Principal = Depends(page_admin),
                     session: Session = db_session) -> Response:
    def change(account: User) -> str:
        return f"Ended {revoke_sessions(session, account.id, f'ended by {user.email}')} session(s)"
    return _change(session, user_id, change)


@router.post("/users/{user_id}/sessions/{session_id}/end", dependencies=[Depends(verify_csrf)])
def end_user_session(user_id: int, session_id: int, user: Principal = Depends(page_admin),
                     session: Session = db_session) -> Response:
    def change(account: User) -> str:
        accounts.revoke_session(session, session_id, account.id, f"ended by {user.email}")
        return "Session ended"
    return _change(session, user_id, change)


@router.post("/users/{user_id}/tokens/{token_id}/revoke", dependencies=[Depends(verify_csrf)])
def revoke_user_token(user_id: int, token_id: int, user: Principal = Depends(page_admin),
                      session: Session = db_session) -> Response:
    def change(account: User) -> str:
        return f"Revoked token {revoke_token(session, token_id, account.id).name}"
    return _change(session, user_id, change)


@router.post("/users/{user_id}/reset-password", response_class=HTMLResponse, dependencies=[Depends(verify_csrf)])
def reset_password(request: Request, user_id: int, user: Principal = Depends(page_admin),
                   session: Session = db_session) -> Response:
    """Always a generated one-time password, shown on this response only: the admin never picks (or learns) the
    password the person will use, because it must be replaced at the next sign-in."""
    try:
        account = accounts.get_user(session, user_id)
        generated = accounts.reset_password(session, account)
        session.commit()
    except AuthError as exc:
        session.rollback()
        return redirect("/admin/users", str(exc))
    if account.id == user.user_id:  # one's own reset ends this session too
        return redirect("/admin/login")
    return _user_page(request, user, session, account, one_time_password=generated,
                      flash="Password reset; their sessions ended")
