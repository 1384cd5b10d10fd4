"""Request dependencies shared by the web routers: a database session, and who is asking."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session

from mailer.db import new_session
from newsletter.auth import SESSION_COOKIE, Principal, principal_from_cookie, principal_from_token


class LoginRequired(Exception):
    """Raised for anonymous page requests; the app turns it into a redirect to the sign-in page."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


def db_session() -> Iterator[Session]:
    session = new_session()
    try:
        yield session
    finally:
        session.close()


def page_user(request: Request, session: Session = Depends(db_session)) -> Principal:
    user = principal_from_cookie(session, request.cookies.get(SESSION_COOKIE))
    if user is None:
        raise LoginRequired(request.url.path)
    request.state.user = user
    return user


def page_admin(user: Principal = Depends(page_user)) -> Principal:
    if not user.is_admin:
        raise HTTPException(status_code=403, detail="Only admins can do this.")
    return user


def api_user(request: Request, session: Session = Depends(db_session)) -> Principal:
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
