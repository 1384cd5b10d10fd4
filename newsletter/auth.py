"""Staff and admin accounts: argon2 passwords, signed session cookies, hashed API tokens, roles.

Sessions are stateless signed cookies (itsdangerous) that also carry a fingerprint of the password hash, so
changing a password signs every old session out.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer.db import utcnow
from mailer.settings import get_settings
from newsletter.models import ApiToken, Role, User

SESSION_COOKIE = "nl_session"
SESSION_MAX_AGE_S = 12 * 3600
MAX_ID = 2**62  # ids from a URL beyond this cannot exist and would overflow BIGINT
_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("timing-equaliser")


class AuthError(ValueError):
    """Sign-in or account problem; the message is safe to show."""


@dataclass(frozen=True)
class Principal:
    user_id: int
    email: str
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


def _normal(email: str) -> str:
    return email.strip().lower()


def create_user(session: Session, email: str, password: str, role: Role) -> User:
    if len(password) < 12:
        raise AuthError("Passwords need at least 12 characters.")
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


def session_cookie(user: User) -> str:
    return str(_serializer().dumps({"uid": user.id, "fp": _fingerprint(user)}))


def principal_from_cookie(session: Session, cookie: str | None) -> Principal | None:
    if not cookie:
        return None
    try:
        data = _serializer().loads(cookie, max_age=SESSION_MAX_AGE_S)
    except BadSignature:
        return None
    user = session.get(User, data.get("uid")) if isinstance(data, dict) else None
    if user is None or not user.active or data.get("fp") != _fingerprint(user):
        return None
    return Principal(user.id, user.email, user.role)


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


def revoke_token(session: Session, token_id: int, owner_id: int) -> ApiToken:
    """Revoke one of `owner_id`'s tokens; another user's token is as unknown as one that does not exist."""
    token = session.get(ApiToken, token_id) if 0 < token_id < MAX_ID else None
    if token is None or token.user_id != owner_id:
        raise AuthError("No such token.")
    token.revoked_at = token.revoked_at or utcnow()
    return token
