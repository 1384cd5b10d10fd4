"""What an admin does to other people's accounts: deactivate, change a role, reset a password, revoke tokens and
sessions. The CLI and the admin pages both call these, so the rules (the last active admin stays, a deactivated
account loses every credential at once) hold whichever way an operator comes in.
"""

from __future__ import annotations

import secrets
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


def _keep_an_admin(session: Session, user: User) -> None:
    """Refuse to leave the installation with no active admin. The active admins' rows are locked first
    (PostgreSQL), so two admins demoting each other at the same moment cannot both succeed; SQLite lets one writer
    at a time through anyway."""
    if user.role is not Role.ADMIN or not user.active:
        return
    admins = session.scalars(select(User.id).where(User.role == Role.ADMIN, User.active.is_(True))
                             .order_by(User.id).with_for_update()).all()
    if list(admins) == [user.id]:
        raise AuthError(f"{user.email} is the last active admin: make another admin first.")


def deactivate(session: Session, user: User) -> None:
    """Ends every session and API token of the account at once, so nothing the person holds still works."""
    _keep_an_admin(session, user)
    user.active = False
    revoke_sessions(session, user.id, "deactivated")
    session.execute(update(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
                    .values(revoked_at=utcnow()))


def activate(session: Session, user: User) -> None:
    """Lets the person sign in again; tokens revoked at deactivation stay revoked (new ones can be made)."""
    user.active = True


def set_role(session: Session, user: User, role: Role) -> None:
    if role is not Role.ADMIN:
        _keep_an_admin(session, user)
    user.role = role


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

