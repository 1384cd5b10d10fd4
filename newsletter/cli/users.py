"""CLI commands: users, their API tokens and sessions.

Whoever runs these has the database, so there is no role check here; the rules that protect the installation
itself (the last active admin stays) live in newsletter.accounts and hold here as on the admin pages.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import typer
from rich.markup import escape
from rich.table import Table
from sqlalchemy.orm import Session

from newsletter import accounts
from newsletter.auth import (
    AuthError,
    create_api_token,
    create_user,
    open_sessions,
    revoke_sessions,
    revoke_token,
    tokens_of,
)
from newsletter.cli.common import console, db, fail
from newsletter.models import Role

users_app = typer.Typer(help="Staff and admin accounts.", no_args_is_help=True)


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment else "-"


def _apply(change: Callable[[Session], str]) -> None:
    """Run one account change in one transaction; a refusal is a clear message and changes nothing."""
    try:
        with db() as session:
            message = change(session)
    except AuthError as exc:
        raise fail(escape(str(exc))) from exc
    console.print(escape(message), highlight=False)


@users_app.command("add")
def add(email: str, role: Role = typer.Option(Role.STAFF),
        password: str = typer.Option(..., prompt=True, hide_input=True, confirmation_prompt=True,
                                     envvar="NEWSLETTER_NEW_USER_PASSWORD")) -> None:
    """Create a user (the password is prompted for, or read from NEWSLETTER_NEW_USER_PASSWORD)."""
    try:
        with db() as session:
            create_user(session, email, password, role)
    except AuthError as exc:
        raise fail(escape(str(exc))) from exc
    console.print(f"created {role.value} {escape(email)}", highlight=False)


@users_app.command("ls")
def ls() -> None:
    """All users, with their open sessions and live API tokens."""
    table = Table("email", "role", "active", "last sign-in", "sessions", "tokens")
    with db() as session:
        for row in accounts.overview(session):
            user = row.user
            table.add_row(escape(user.email), user.role.value, "yes" if user.active else "no",
                          _when(user.last_login_at), str(row.sessions), str(row.tokens))
    console.print(table)


@users_app.command("deactivate")
def deactivate(email: str) -> None:
    """Stop a user at once: every session and API token of theirs is refused from the next request on."""
    def change(session: Session) -> str:
        accounts.deactivate(session, accounts.find_user(session, email))
        return f"deactivated {email}: sessions ended, API tokens revoked"
    _apply(change)


@users_app.command("activate")
def activate(email: str) -> None:
    """Let a deactivated user sign in again (their old API tokens stay revoked)."""
    def change(session: Session) -> str:
        accounts.activate(session, accounts.find_user(session, email))
        return f"activated {email}"
    _apply(change)


@users_app.command("role")
def role(email: str, new_role: Role = typer.Argument(..., metavar="ROLE")) -> None:
    """Make a user admin or staff (the last active admin cannot be demoted)."""
    def change(session: Session) -> str:
        accounts.set_role(session, accounts.find_user(session, email), new_role)
        return f"{email} is now {new_role.value}"
    _apply(change)


@users_app.command("reset-password")
def reset_password(email: str,
                   generate: bool = typer.Option(False, "--generate", help="Print a one-time password instead: "
                                                 "it opens only the page where the user picks their own."),
                   password: str | None = typer.Option(None, envvar="NEWSLETTER_NEW_USER_PASSWORD", hidden=True)
                   ) -> None:
    """Set a new password (prompted for, or --generate a one-time one); every session of the user ends."""
    if not generate and password is None:
        password = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    shown: list[str] = []

    def change(session: Session) -> str:
        generated = accounts.reset_password(session, accounts.find_user(session, email),
                                            None if generate else password)
        if generated:
            shown.append(generated)
        return f"password of {email} reset; their sessions ended"
    _apply(change)
    if shown:
        console.print(shown[0], highlight=False)
        console.print("Give it to them now: it is shown once and must be changed at the next sign-in.", style="dim")


@users_app.command("sessions")
def sessions(email: str) -> None:
    """A user's open browser sessions."""
    table = Table("id", "signed in", "last seen", "expires", "address", "browser")
    try:
        with db() as session:
            user = accounts.find_user(session, email)
            for row in open_sessions(session, user.id):
                table.add_row(str(row.id), _when(row.created_at), _when(row.last_seen_at), _when(row.expires_at),
                              escape(row.client_address or "-"), escape((row.user_agent or "-")[:60]))
    except AuthError as exc:
        raise fail(escape(str(exc))) from exc
    console.print(table)


@users_app.command("signout")
def signout(email: str) -> None:
    """End every browser session of a user (API tokens are left alone: `users token revoke`)."""
    def change(session: Session) -> str:
        ended = revoke_sessions(session, accounts.find_user(session, email).id, "ended by an operator")
        return f"ended {ended} session(s) of {email}"
    _apply(change)


@users_app.command("tokens")
def tokens(email: str) -> None:
    """A user's API tokens, revoked ones included."""
    table = Table("id", "name", "created", "last used", "revoked")
    try:
        with db() as session:
            user = accounts.find_user(session, email)
            for token in tokens_of(session, user.id):
                table.add_row(str(token.id), escape(token.name), _when(token.created_at), _when(token.last_used_at),
                              _when(token.revoked_at))
    except AuthError as exc:
        raise fail(escape(str(exc))) from exc
    console.print(table)


tokens_app = typer.Typer(help="API tokens for Authorization: Bearer.", no_args_is_help=True)
users_app.add_typer(tokens_app, name="token")


@tokens_app.command("create")
def token_create(email: str, name: str = typer.Option(..., help="What the token is for.")) -> None:
    """Create an API token for a user; it is shown once and only its hash is stored."""
    try:
        with db() as session:
            value = create_api_token(session, accounts.find_user(session, email), name)
    except AuthError as exc:
        raise fail(escape(str(exc))) from exc
    console.print(value, highlight=False)
    console.print("Store it now: it cannot be shown again.", style="dim")


@tokens_app.command("revoke")
def token_revoke(token_id: int = typer.Argument(..., metavar="ID")) -> None:
    """Revoke an API token by id (see `users tokens EMAIL`); it is refused from the next request on."""
    def change(session: Session) -> str:
        token = revoke_token(session, token_id, None)
        return f"revoked token {token.id} ({token.name})"
    _apply(change)


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")
