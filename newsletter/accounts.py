"""What an admin does to other people's accounts: deactivate, change a role, reset a password, revoke tokens and
sessions. The CLI and the admin pages both call these, so the rules (the last active admin stays, a deactivated
account loses every credential at once) hold whichever way an operator comes in.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from mailer.db import utcnow
from newsletter.auth import MAX_ID, AuthError, revoke_sessions, set_password
from newsletter.models import ApiToken, Role, User, UserSession


def find_user(session: Session, email: str) -> User:
    user = session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise AuthError(f"There is no user {email.strip()}.")
    return user


def get_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id) if 0 < user_id < MAX_ID else None
    if user is None:
        raise AuthError("No such user.")
    return user


def _keeping_an_admin(session: Session, user: User, change: Callable[[], None]) -> None:
    """Apply a change that may take an admin away, refusing it if no active admin would be left.

    Two admins demoting each other at the same moment must not both succeed. On PostgreSQL the active admins' rows
    are locked first, so the second waits and then sees the first's change. On SQLite (whose driver starts a
    transaction only at the first write) the change is written before counting: the write takes the database's
    one write lock, so the second writer waits for the first to commit and then counts what it left."""
    was_admin = user.role is Role.ADMIN and user.active
    if was_admin:
        session.scalars(select(User.id).where(User.role == Role.ADMIN, User.active.is_(True))
                        .order_by(User.id).with_for_update()).all()
    change()
    session.flush()
    if was_admin and not session.scalar(select(func.count()).select_from(User).where(
            User.role == Role.ADMIN, User.active.is_(True))):
        raise AuthError(f"{user.email} is the last active admin: make another admin first.")


def deactivate(session: Session, user: User) -> None:
    """Ends every session and API token of the account at once, so nothing the person holds still works."""
    def change() -> None:
        user.active = False
    _keeping_an_admin(session, user, change)
    revoke_sessions(session, user.id, "deactivated")
    session.execute(update(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
                    .values(revoked_at=utcnow()))


def activate(session: Session, user: User) -> None:
    """Lets the person sign in again; tokens revoked at deactivation stay revoked (new ones can be made)."""
    user.active = True


def set_role(session: Session, user: User, role: Role) -> None:
    def change() -> None:
        user.role = role
    _keeping_an_admin(session, user, change)


def reset_password(session: Session, user: User, password: str | None = None) -> str | None:
    """With no password, generates one that opens a single page where the person must choose their own, and
    returns it (shown once). Either way every session of the account ends."""
    if password is not None:
        set_password(session, user, password)
        return None
    generated = secrets.token_urlsafe(18)
    set_password(session, user, generated, must_change=True)
    return generated


def revoke_session(session: Session, session_id: int, owner_id: int, reason: str) -> None:
    row = session.get(UserSession, session_id) if 0 < session_id < MAX_ID else None
    if row is None or row.user_id != owner_id:
        raise AuthError("No such session.")
    if row.revoked_at is None:
        row.revoked_at, row.revoked_reason = utcnow(), reason


@dataclass(frozen=True)
class AccountRow:
    user: User
    sessions: int
    tokens: int


def overview(session: Session) -> list[AccountRow]:
    """Every account with its open sessions and live tokens counted, for the users page and `users ls`."""
    now = utcnow()
    sessions = dict(session.execute(select(UserSession.user_id, func.count()).where(
        UserSession.revoked_at.is_(None), UserSession.expires_at > now).group_by(UserSession.user_id)).all())
    tokens = dict(session.execute(select(ApiToken.user_id, func.count()).where(
        ApiToken.revoked_at.is_(None)).group_by(ApiToken.user_id)).all())
    return [AccountRow(user, sessions.get(user.id, 0), tokens.get(user.id, 0))
            for user in session.scalars(select(User).order_by(User.email))]

