"""CLI commands: bounces (receive DSNs over SMTP, fetch them from IMAP, and look at what could not be matched)."""

from __future__ import annotations

import time

import typer
from rich.markup import escape
from rich.table import Table
from sqlalchemy import select

from mailer.settings import get_settings
from newsletter.cli.common import console, db, fail
from worker.bounces import fetch_imap, receiver
from worker.models import ProviderEvent, UnmatchedBounce

bounces_app = typer.Typer(help="SMTP bounces (DSNs) back to the suppression list.", no_args_is_help=True)


@bounces_app.command("receive")
def receive(host: str = typer.Option("0.0.0.0", help="Address to listen on (the bounce subdomain's MX)."),  # noqa: S104
            port: int = typer.Option(2525)) -> None:
    """Run a small SMTP server that accepts DSNs for our VERP addresses and applies them."""
    server = receiver(host, port)
    server.start()
    console.print(f"receiving bounces on {host}:{port} (Ctrl+C to stop)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


@bounces_app.command("fetch")
def fetch() -> None:
    """Read unseen messages from the bounce mailbox over IMAP (NEWSLETTER_IMAP_*) and apply them."""
    if not get_settings().imap_host:
        raise fail("NEWSLETTER_IMAP_HOST is not set")
    result = fetch_imap()
    console.print(f"{result.events} bounce event(s) stored"
                  + (f"; {result.unmatched} kept unmatched, nobody suppressed (newsletter bounces ls --unmatched)"
                     if result.unmatched else ""), highlight=False)


def _cells(*values: object) -> list[str]:
    """Table cells from data that came from outside: shown as text, never read as Rich markup."""
    return [escape(str(value)) for value in values]


@bounces_app.command("ls")
def ls(unmatched: bool = typer.Option(False, "--unmatched", help="Bounces with no genuine VERP address: they "
                                      "suppressed nobody and wait for a person."),
       rejected: bool = typer.Option(False, "--rejected", help="Provider events refused as malformed or that "
                                     "failed to apply, with the error."),
       limit: int = typer.Option(50)) -> None:
    """Recent bounce events, or (with a flag) what came back and was not acted on."""
    with db() as session:
        if unmatched:  # one block per message: the reasons and claims are long, and read better unwrapped
            rows = session.scalars(select(UnmatchedBounce).order_by(UnmatchedBounce.id.desc()).limit(limit)).all()
            for row in rows:
                claims = ", ".join(f"{n.get('recipient')} {n.get('status')}" for n in row.named or []) or "none"
                console.print(f"{row.id}  {row.received_at:%Y-%m-%d %H:%M}  via {row.via}: {row.why}\n"
                              f"    from: {row.sender}\n    to: {row.envelope_to}\n    subject: {row.subject}\n"
                              f"    claims to report: {claims}", highlight=False, markup=False)
            console.print(f"{len(rows)} unmatched bounce(s); none of them suppressed anybody "
                          "(newsletter bounces show ID for the message)", highlight=False)
            return
        if rejected:
            events = session.scalars(select(ProviderEvent).where(ProviderEvent.error.is_not(None))
                                     .order_by(ProviderEvent.id.desc()).limit(limit)).all()
            for event in events:
                console.print(f"{event.id}  {event.received_at:%Y-%m-%d %H:%M}  {event.provider} "
                              f"{event.provider_event_id}: {event.error}", highlight=False, markup=False)
            console.print(f"{len(events)} rejected event(s)", highlight=False)
            return
        table = Table("id", "received", "provider", "kind", "address", "status", "delivery", "applied")
        for event in session.scalars(select(ProviderEvent).where(ProviderEvent.kind.in_(["bounce", "blocked"]))
                                     .order_by(ProviderEvent.id.desc()).limit(limit)):
            state = "rejected" if event.error else ("yes" if event.processed_at else "pending")
            table.add_row(*_cells(event.id, event.received_at.strftime("%Y-%m-%d %H:%M"), event.provider,
                                  event.kind.value, event.email or "", (event.payload or {}).get("_status", ""),
                                  event.delivery_id or "", state))
    console.print(table)


@bounces_app.command("show")
def show(bounce_id: int) -> None:
    """One unmatched bounce as it arrived (cut at 64 KB)."""
    with db() as session:
        row = session.get(UnmatchedBounce, bounce_id)
        if row is None:
            raise fail(f"No unmatched bounce {bounce_id}.")
        console.print(f"unmatched bounce {row.id} via {row.via}, {row.received_at:%Y-%m-%d %H:%M}: "
                      f"{escape(row.why)}", highlight=False)
        console.print(escape(row.raw), highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(bounces_app, name="bounces")
