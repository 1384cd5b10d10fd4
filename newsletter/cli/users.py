"""CLI commands: users and API tokens."""

from __future__ import annotations

import typer
from rich.table import Table
from sqlalchemy import select

from newsletter.auth import AuthError, create_api_token, create_user
from newsletter.cli.common import console, db, fail
from newsletter.models import Role, User

users_app = typer.Typer(help="Staff and admin accounts.", no_args_is_help=True)


@users_app.command("add")
def add(email: str, role: Role = typer.Option(Role.STAFF),
        password: str = typer.Option(..., prompt=True, hide_input=True, confirmation_prompt=True,
                                     envvar="NEWSLETTER_NEW_USER_PASSWORD")) -> None:
    """Create a user (the password is prompted for, or read from NEWSLETTER_NEW_USER_PASSWORD)."""
    try:
        with db() as session:
            create_user(session, email, password, role)
    except AuthError as exc:
        raise fail(str(exc)) from exc
    console.print(f"created {role.value} {email}")


@users_app.command("ls")
def ls() -> None:
    """All users."""
    table = Table("email", "role", "active", "last sign-in")
    with db() as session:
        for user in session.scalars(select(User).order_by(User.email)):
            table.add_row(user.email, user.role.value, "yes" if user.active else "no",
                          user.last_login_at.strftime("%Y-%m-%d %H:%M") if user.last_login_at else "-")
    console.print(table)


tokens_app = typer.Typer(help="API tokens for Authorization: Bearer.", no_args_is_help=True)
users_app.add_typer(tokens_app, name="token")


@tokens_app.command("create")
def token_create(email: str, name: str = typer.Option(..., help="What the token is for.")) -> None:
    """Create an API token for a user; it is shown once and only its hash is stored."""
    with db() as session:
        user = session.scalar(select(User).where(User.email == email.strip().lower()))
        if user is None:
            raise fail(f"no user {email}")
        value = create_api_token(session, user, name)
    console.print(value, highlight=False)
    console.print("Store it now: it cannot be shown again.", style="dim")


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")
