"""Helpers shared by CLI modules: one console, clean exits on the errors a user can fix."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from sqlalchemy.orm import Session

from mailer.db import session_scope
from subscribers.service import InvalidEmail, ServiceError

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]{message}[/red]", highlight=False)
    return typer.Exit(code)


@contextmanager
def db() -> Iterator[Session]:
    """A unit of work whose user-facing errors end the command with a message instead of a traceback."""
    try:
        with session_scope() as session:
            yield session
    except (ServiceError, InvalidEmail) as exc:
        raise fail(str(exc)) from exc
