"""Helpers shared by CLI modules: one console, clean exits on the errors a user can fix.

The consoles interpret no Rich markup: everything the CLI prints may hold user data (a list named ``[/red]``, an
address, a file name), so styling is passed as ``style=`` and text is always printed as it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.progress import TextColumn
from sqlalchemy.orm import Session

from mailer.db import session_scope
from subscribers.service import InvalidEmail, ServiceError

console = Console(soft_wrap=True, markup=False)
err = Console(stderr=True, soft_wrap=True, markup=False)


def description_column() -> TextColumn:
    """A progress description printed as text (a file name may contain brackets)."""
    return TextColumn("{task.description}", style="progress.description", markup=False)


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(message, style="red", highlight=False)
    return typer.Exit(code)


@contextmanager
def db() -> Iterator[Session]:
    """A unit of work whose user-facing errors end the command with a message instead of a traceback."""
    try:
        with session_scope() as session:
            yield session
    except (ServiceError, InvalidEmail) as exc:
        raise fail(str(exc)) from exc
