"""Staff and admin accounts: argon2 passwords, signed session cookies, hashed API tokens, roles.

A browser session is a row in user_sessions named by a random id in a signed cookie (itsdangerous) that also
carries a fingerprint of the password hash. The row makes sign-out, "sign out everywhere", a password change and
deactivation take effect at once on every copy of the cookie; the fingerprint is a second guard for a password
changed by any other path.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from mailer.db import as_utc, utcnow
from mailer.settings import get_settings
from newsletter.models import ApiToken, Role, User, UserSession

SESSION_COOKIE = "nl_session"
SESSION_MAX_AGE_S = 12 * 3600
MAX_ID = 2**62  # ids from a URL beyond this cannot exist and would overflow BIGINT
SESSION_ROW_KEEP = timedelta(days=30)  # ended sessions stay visible this long, then go at their owner's next sign-in
LAST_SEEN_EVERY = timedelta(seconds=60)
_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("timing-equaliser")


class AuthError(ValueError):
    """Sign-in or account problem; the message is safe to show."""


@dataclass(frozen=True)
class Principal:
    user_id: int
    email: str
    role: Role
    session_id: int | None = None  # the browser session this request came with; None for API tokens
    must_change_password: bool = False

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


def _normal(email: str) -> str:
    return email.strip().lower()


def check_password(password: str) -> None:
    if len(password) < 12:
        raise AuthError("Passwords need at least 12 characters.")
    if len(password) > 1000:  # argon2 hashes any length; this only bounds the work a form can ask for
        raise AuthError("Passwords can have at most 1000 characters.")


def create_user(session: Session, email: str, password: str, role: Role) -> User:
    check_password(password)
    if session.scalar(select(User.id).where(User.email == _normal(email))) is not None:
        raise AuthError(f"A user {email} already exists.")
    user = User(email=_normal(email), password_hash=_hasher.hash(password), role=role)
    session.add(user)
    session.flush()
    return user


def authenticate(session: Session, email: str, password: str) -> User | None:
    user = session.scalar(select(User).where(User.email == _normal(email), User.active.is_(True)))
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)  # same work whether or not it exists
    except (VerificationError, InvalidHashError):
        return None
    if user is None:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.last_login_at = utcnow()
    return user


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(get_settings().secret, salt="newsletter.admin-session")


def _fingerprint(user: User) -> str:
    return hashlib.sha256(user.password_hash.encode()).hexdigest()[:16]


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()



def start_session(session: Session, user: User, client_address: str | None, user_agent: str | None) -> str:
    """Record a sign-in and return its cookie value. The cookie is signed (forgeries cost no database read) and
    carries a password fingerprint (a password changed by any path, even by hand in SQL, ends it); the row is what
    sign-out and revocation end."""
    raw = secrets.token_urlsafe(32)
    now = utcnow()
    # Rows of this user that ended long ago are of no further use; each sign-in clears its own, so the table stays
    # the size of recent activity without a housekeeping job in this layer.
    session.execute(delete(UserSession).where(UserSession.user_id == user.id,
                                              UserSession.expires_at < now - SESSION_ROW_KEEP))
    session.add(UserSession(user_id=user.id, id_hash=_sha256(raw), created_at=now, last_seen_at=now,
                            expires_at=now + timedelta(seconds=SESSION_MAX_AGE_S),
                            client_address=(client_address or "")[:64] or None,
                            user_agent=(user_agent or "")[:300] or None))
    session.flush()
    return str(_serializer().dumps({"sid": raw, "fp": _fingerprint(user)}))


def _session_row(session: Session, cookie: str | None) -> tuple[UserSession, User] | None:
    if not cookie or len(cookie) > 1000:
        return None
    try:
        data = _serializer().loads(cookie, max_age=SESSION_MAX_AGE_S)
    except BadSignature:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("sid"), str):
        return None  # includes cookies from before server-side sessions: they carry no id
    row = session.scalar(select(UserSession).where(UserSession.id_hash == _sha256(data["sid"]),
                                                   UserSession.revoked_at.is_(None),
                                                   UserSession.expires_at > utcnow()))
    user = session.get(User, row.user_id) if row is not None else None
    if row is None or user is None or not user.active or data.get("fp") != _fingerprint(user):
        return None
    return row, user


def principal_from_cookie(session: Session, cookie: str | None) -> Principal | None:
    """Who a browser is, checked against the sessions table on every request. Marks the session as seen (at most
    once a minute, so reading pages does not write on every request); the caller commits."""
    found = _session_row(session, cookie)
    if found is None:
        return None
    row, user = found
    now = utcnow()
    if now - as_utc(row.last_seen_at) > LAST_SEEN_EVERY:
        row.last_seen_at = now
    return Principal(user.id, user.email, user.role, session_id=row.id,
                     must_change_password=user.must_change_password)


def end_session(session: Session, cookie: str | None, reason: str = "signed out") -> None:
    """Sign-out: the row ends, so a copy of the cookie kept anywhere stops working too."""
    found = _session_row(session, cookie)
    if found is not None and found[0].revoked_at is None:
        found[0].revoked_at, found[0].revoked_reason = utcnow(), reason


def revoke_sessions(session: Session, user_id: int, reason: str, keep: int | None = None) -> int:
    """End every open session of a user (but `keep`, the caller's own, if given); returns how many ended."""
    query = update(UserSession).where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None))
    if keep is not None:
        query = query.where(UserSession.id != keep)
    result = session.execute(query.values(revoked_at=utcnow(), revoked_reason=reason))
    return int(getattr(result, "rowcount", 0) or 0)


def open_sessions(session: Session, user_id: int) -> list[UserSession]:
    return list(session.scalars(select(UserSession).where(
        UserSession.user_id == user_id, UserSession.revoked_at.is_(None), UserSession.expires_at > utcnow())
        .order_by(UserSession.last_seen_at.desc())))


def set_password(session: Session, user: User, password: str, *, must_change: bool = False) -> None:
    """A new password ends every session of the account: whoever knew the old one is signed out."""
    check_password(password)
    user.password_hash = _hasher.hash(password)
    user.must_change_password = must_change
    revoke_sessions(session, user.id, "password changed")


def verify_password(user: User, password: str) -> bool:
    try:
        return bool(_hasher.verify(user.password_hash, password))
    except (VerificationError, InvalidHashError):
        return False


def create_api_token(session: Session, user: User, name: str) -> str:
    """Returns the token: shown once, stored only as a SHA-256."""
    token = "nl_" + secrets.token_urlsafe(32)
    session.add(ApiToken(user_id=user.id, name=name, token_hash=hashlib.sha256(token.encode()).hexdigest()))
    session.flush()
    return token


def principal_from_token(session: Session, token: str | None) -> Principal | None:
    if not token:
        return None
    found = session.scalar(select(ApiToken).where(
        ApiToken.token_hash == hashlib.sha256(token.encode()).hexdigest(), ApiToken.revoked_at.is_(None)))
    if found is None:
        return None
    user = session.get(User, found.user_id)
    if user is None or not user.active:
        return None
    found.last_used_at = utcnow()
    return Principal(user.id, user.email, user.role)


def tokens_of(session: Session, user_id: int) -> list[ApiToken]:
    """A user's API tokens, newest first, revoked ones included (they show as revoked)."""
    return list(session.scalars(select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id.desc())))


def create_token_for(session: Session, user_id: int, name: str) -> str:
    """`create_api_token` for the signed-in user, who is known by id."""
    user = session.get(User, user_id)
    if user is None:
        raise AuthError("No such user.")
    return create_api_token(session, user, name)


def revoke_token(session: Session, token_id: int, owner_id: int | None) -> ApiToken:
    """Revoke one of `owner_id`'s tokens; another user's token is as unknown as one that does not exist. With no
    owner (an operator at the CLI, who names a token by id) any user's token."""
    token = session.get(ApiToken, token_id) if 0 < token_id < MAX_ID else None
    if token is None or (owner_id is not None and token.user_id != owner_id):
        raise AuthError("No such token.")
    token.revoked_at = token.revoked_at or utcnow()
    return token
