"""CLI commands: suppressions."""

from __future__ import annotations

import typer
from rich.table import Table

from newsletter.cli.common import console, db, fail
from subscribers import queries, service
from subscribers.models import ConsentSource, SuppressionReason

suppressions_app = typer.Typer(help="Addresses we never send to.", no_args_is_help=True)


@suppressions_app.command("ls")
def ls(limit: int = typer.Option(100)) -> None:
    """The most recent suppressions."""
    table = Table("email", "reason", "since", "note")
    with db() as session:
        for row in queries.recent_suppressions(session, limit):
            table.add_row(row.email or "(erased)", row.reason.value, row.created_at.strftime("%Y-%m-%d"), row.note)
    console.print(table)


@suppressions_app.command("add")
def add(email: str, reason: SuppressionReason = typer.Option(SuppressionReason.MANUAL),
        note: str = typer.Option("")) -> None:
    """Suppress an address (it will never be sent to)."""
    with db() as session:
        address = service.normalise_email(email, check_deliverability=False)
        service.suppress(session, address, reason, source=ConsentSource.ADMIN, note=note)
    console.print(f"suppressed {address}")


@suppressions_app.command("rm")
def rm(email: str, note: str = typer.Option("", help="Why it is safe to send again.")) -> None:
    """Remove a suppression."""
    with db() as session:
        address = service.normalise_email(email, check_deliverability=False)
        if not service.unsuppress(session, address, source=ConsentSource.ADMIN, note=note):
            raise fail(f"{address} is not suppressed")
    console.print(f"removed suppression of {address}")


def register(app: typer.Typer) -> None:
    app.add_typer(suppressions_app, name="suppressions")
