"""CLI commands: bounces (receive DSNs over SMTP, fetch them from IMAP)."""

from __future__ import annotations

import time

import typer

from mailer.settings import get_settings
from newsletter.cli.common import console, fail
from worker.bounces import fetch_imap, receiver

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
    console.print(f"{fetch_imap()} bounce event(s) stored")


def register(app: typer.Typer) -> None:
    app.add_typer(bounces_app, name="bounces")
