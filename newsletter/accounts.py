"""What is done to accounts beyond signing in: ending sessions by id, checked against their owner."""

from __future__ import annotations

from sqlalchemy.orm import Session

from mailer.db import utcnow
from newsletter.auth import MAX_ID, AuthError
from newsletter.models import UserSession


def revoke_session(session: Session, session_id: int, owner_id: int, reason: str) -> None:
    row = session.get(UserSession, session_id) if 0 < session_id < MAX_ID else None
    if row is None or row.user_id != owner_id:
        raise AuthError("No such session.")
    if row.revoked_at is None:
        row.revoked_at, row.revoked_reason = utcnow(), reason
