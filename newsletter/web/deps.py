"""Request dependencies shared by the web routers: a database session, the submitted form, and who is asking."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from mailer.db import new_session
from newsletter.auth import SESSION_COOKIE, Principal, principal_from_cookie, principal_from_token
from newsletter.web.forms import read_form


class LoginRequired(Exception):
    """Raised for anonymous page requests; the app turns it into a redirect to the sign-in page."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path
        self.location = f"/admin/login?next={next_path}"


class PasswordChangeRequired(LoginRequired):
    """Signed in with a one-time password: every page but the one that sets a new password redirects there."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.location = ACCOUNT_PAGE


ACCOUNT_PAGE = "/admin/account"


async def _db_session() -> AsyncIterator[Session]:
    """A session for the handler. Async, so that making it and, usually, closing it cost no trip through the
    thread pool (a sync dependency took two, around the handler's own): making one does no I/O (a connection is
    taken at the first query), and neither does closing one whose handler committed last. Only a session still in
    a transaction (a handler that only read, or failed) is closed in the thread pool: its ROLLBACK is a round trip,
    and no query runs on the event loop."""
    session = new_session()
    try:
        yield session
    finally:
        if session.in_transaction():
            await run_in_threadpool(session.close)  # rolls back, and returns the connection
        else:
            session.close()


# Function scope: the session is closed as soon as the handler returns, before the response is sent. With the
# default (request) scope it stayed open, its connection `idle in transaction`, until the client had read the whole
# response, so clients that stop reading (or a burst that ends with connections half done) held the whole pool.
db_session = Depends(_db_session, scope="function")


async def form_data(request: Request) -> FormData:
    """The request's form, read on the event loop before a sync handler runs in the threadpool.

    Handlers that touch the database are plain `def`s (run in the threadpool) so that no query ever blocks the event
    loop; they get the form through this dependency instead of awaiting `request.form()` themselves.
    """
    return await read_form(request)


def page_user(request: Request, session: Session = db_session) -> Principal:
    user = principal_from_cookie(session, request.cookies.get(SESSION_COOKIE))
    if user is None:
        raise LoginRequired(request.url.path)
    session.commit()  # last_seen_at
    if user.must_change_password and request.url.path not in (ACCOUNT_PAGE, ACCOUNT_PAGE + "/password"):
        raise PasswordChangeRequired(request.url.path)
    request.state.user = user
    return user


def page_admin(user: Principal = Depends(page_user)) -> Principal:
    if not user.is_admin:
        raise HTTPException(status_code=403, detail="Only admins can do this.")
    return user


def api_user(request: Request, session: Session = db_session) -> Principal:
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else None
    user = principal_from_token(session, token)
    if user is None:
        raise HTTPException(status_code=401, detail="A valid API token is required (Authorization: Bearer ...).",
                            headers={"WWW-Authenticate": "Bearer"})
    session.commit()  # last_used_at
    return user


def api_admin(user: Principal = Depends(api_user)) -> Principal:
    if not user.is_admin:
        raise HTTPException(status_code=403, detail="This needs an admin's token.")
    return user
