"""CLI commands: subscribers (add, list, unsubscribe, erase, import, export)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table
from sqlalchemy.orm import Session

from mailer.db import new_session
from newsletter.cli.common import console, db, description_column, fail
from subscribers import importer, mailing_lists, privacy, queries, service
from subscribers.models import ConsentSource, Subscriber, SubscriptionStatus
from subscribers.service import Refusal
from worker.notifications import notify_after_commit

subscribers_app = typer.Typer(help="Subscribers of lists.", no_args_is_help=True)


def _find(session: Session, email: str) -> Subscriber:
    address = service.normalise_email(email, check_deliverability=False)
    subscriber = queries.find_subscriber_by_email(session, address)
    if subscriber is None:
        raise fail(f"no subscriber {address}")
    return subscriber


@subscribers_app.command("add")
def add(email: str, list_slug: str = typer.Option(..., "--list"), name: str = typer.Option(""),
        confirmed: bool = typer.Option(False, help="Consent was given elsewhere (needs --consent-source)."),
        consent_source: str = typer.Option("", help="Where and when they agreed, e.g. 'paper form 2024-05-01'."),
        override_suppression: bool = typer.Option(False, help="Subscribe even if the address is suppressed.")) -> None:
    """Add one subscriber. Without --confirmed they get a confirmation email (double opt-in lists)."""
    with db() as session:
        mailing_list = mailing_lists.get_list(session, list_slug)
        outcome = service.subscribe(session, mailing_list, email, name, source=ConsentSource.ADMIN,
                                    confirmed=confirmed, consent_note=consent_source,
                                    override_suppression=override_suppression)
        if outcome.refused is Refusal.SUPPRESSED:
            raise fail(f"{email} is suppressed; use --override-suppression if they asked to come back")
        notify_after_commit(session, outcome.notify)
        assert outcome.subscription is not None
        status = outcome.subscription.status.value
    console.print(f"{email}: {status} on {list_slug}")


@subscribers_app.command("ls")
def ls(list_slug: str = typer.Option(None, "--list"), status: SubscriptionStatus = typer.Option(None),
       search: str = typer.Option(None), limit: int = typer.Option(50)) -> None:
    """Subscribers, filtered by list, status or a search in address and name."""
    table = Table("email", "name", "lists")
    with db() as session:
        slug = mailing_lists.get_list(session, list_slug).slug if list_slug else ""  # an unknown list is an error here
        found = queries.search_subscribers(session, search=search or "", list_slug=slug, status=status, limit=limit)
        for row in found.rows:
            lists = ", ".join(f"{m.mailing_list.slug}:{m.status.value}" for m in row.memberships)
            table.add_row(row.subscriber.email, row.subscriber.name, lists)
    console.print(table)


@subscribers_app.command("unsubscribe")
def unsubscribe(email: str, list_slug: str = typer.Option(None, "--list", help="Default: every list.")) -> None:
    """Unsubscribe someone from one list or from everything."""
    with db() as session:
        subscriber = _find(session, email)
        list_id = mailing_lists.get_list(session, list_slug).id if list_slug else None
        changed = service.unsubscribe(session, subscriber.id, list_id, source=ConsentSource.ADMIN)
    console.print(f"{email}: unsubscribed from {changed} list(s)")


@subscribers_app.command("erase")
def erase(email: str, yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation.")) -> None:
    """Erase a subscriber's personal data (keeps a hashed suppression)."""
    if not yes:
        typer.confirm(f"Erase {email} and everything we hold about them?", abort=True)
    with db() as session:
        privacy.erase(session, _find(session, email).id, source=ConsentSource.ADMIN)
    console.print(f"{email}: erased")


@subscribers_app.command("export")
def export(list_slug: str = typer.Option(..., "--list"), out: Path = typer.Option(None, help="Default: stdout."),
           status: SubscriptionStatus = typer.Option(None)) -> None:
    """Export a list as CSV (streamed)."""
    with db() as session:
        if out is None:
            count = importer.export_csv(session, list_slug, sys.stdout, status=status)
        else:
            with out.open("w", newline="") as handle:
                count = importer.export_csv(session, list_slug, handle, status=status)
    if out is not None:
        console.print(f"{count} subscribers written to {out}")


@subscribers_app.command("import")
def import_(file: Path, list_slug: str = typer.Option(..., "--list"),
            confirmed: bool = typer.Option(False, help="They already consented (needs --consent-source)."),
            consent_source: str = typer.Option(""),
            report: Path = typer.Option(None, help="Error report CSV (default: next to the file)."),
            welcome: bool = typer.Option(False, "--welcome/--no-welcome",
                                         help="The list's welcome series mails them once confirmed (default: "
                                              "no).")) -> None:
    """Import a CSV (email,name,...); bad rows go to a report with their line numbers. Rerun to resume."""
    if not file.is_file():
        raise fail(f"{file}: {'a directory, not a CSV file' if file.is_dir() else 'no such file'}")
    with Progress(description_column(), BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), TimeRemainingColumn(), console=console, transient=False) as progress:
        task = progress.add_task(f"importing {file.name}", total=file.stat().st_size)
        try:
            result = importer.import_csv(new_session, file, list_slug, confirmed=confirmed,
                                         consent_source=consent_source, report_path=report, welcome=welcome,
                                         progress=lambda done, total: progress.update(task, completed=done))
        except (importer.ImportFileError, service.ServiceError) as exc:
            raise fail(str(exc)) from exc
    resumed = f" (resumed after line {result.resumed_from_line})" if result.resumed_from_line else ""
    console.print(f"imported {result.imported}, skipped {result.skipped}, errors {result.errors}{resumed}")
    if result.errors or result.skipped:
        console.print(f"report: {result.report_path}")


def register(app: typer.Typer) -> None:
    app.add_typer(subscribers_app, name="subscribers")
