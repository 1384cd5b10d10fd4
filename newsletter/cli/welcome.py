"""CLI commands: a list's welcome series (add, ls, rm, run)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer

from mailer.issue import IssueError
from mailer.render import RenderError
from mailer.store import issue_by_slug, save_issue
from newsletter.cli.common import console, db, fail
from subscribers import mailing_lists
from worker import reports, sends, welcome

welcome_app = typer.Typer(help="A list's welcome series: emails sent after each new subscriber's confirmation.",
                          no_args_is_help=True)


def _parse_since(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise fail(f"--since {value[:40]!r}: use ISO 8601, e.g. 2026-11-01T00:00 (UTC unless an offset is given)") \
            from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@welcome_app.command("add")
def add(list_slug: str = typer.Argument(..., metavar="LIST"),
        issue: str = typer.Argument(..., help="A stored issue's slug, or an issue's Markdown file."),
        after: str = typer.Option(..., "--after", help="Delay after confirmation: 0 (at once), 30m, 12h, 2d, 1w."),
        since: str = typer.Option(None, "--since", help="Also welcome those confirmed since this past time "
                                                        "(ISO 8601); by default only confirmations from now on.")
        ) -> None:
    """Add an email to a list's welcome series. The issue is frozen now: later edits do not change the step."""
    try:
        delay = welcome.parse_delay(after)
    except welcome.DelayError as exc:
        raise fail(f"--after: {exc}") from exc
    first = _parse_since(since) if since else None
    with db() as session:
        mailing_list = mailing_lists.get_list(session, list_slug)
        record = issue_by_slug(session, issue)
        if record is None and issue.endswith(".md"):
            try:
                record = save_issue(session, Path(issue).read_text(encoding="utf-8"), filename=issue)
            except OSError as exc:
                raise fail(f"{issue}: {exc.strerror or exc}") from exc
            except (IssueError, RenderError) as exc:
                raise fail(f"{issue}: {exc}") from exc
        if record is None:
            raise fail(f"No issue '{issue}': give a stored issue's slug (newsletter issues ls) or a Markdown file.")
        try:
            step = sends.add_welcome_step(session, mailing_list.id, record.id, delay, since=first,
                                          created_by="cli")
        except sends.SendError as exc:
            raise fail(str(exc)) from exc
        position = [s.id for s in welcome.steps_of(session, mailing_list.id)].index(step.id) + 1
        console.print(f"welcome email {position} of {mailing_list.slug}: '{record.slug}' "
                      f"{'at once' if delay == 0 else welcome.format_delay(delay) + ' after confirmation'} "
                      f"(send {step.send_id})", highlight=False)


@welcome_app.command("ls")
def ls(list_slug: str = typer.Argument(..., metavar="LIST")) -> None:
    """The series in mailing order, one line per email with what it did (opened and clicked count people, not
    machines; waiting = admitted, not yet sent)."""
    with db() as session:
        mailing_list = mailing_lists.get_list(session, list_slug)
        rows = reports.welcome_series(session, mailing_list.id)
        if not rows:
            console.print(f"{mailing_list.slug} has no welcome series"
                          f"{' (its fixed welcome email is on)' if mailing_list.welcome_enabled else ''}.",
                          highlight=False)
        for row in rows:
            counts, figures = row.counts, row.figures
            console.print(f"{row.position}. after {row.delay}: {row.issue.slug} (send {row.send.id}, "
                          f"{row.send.status.value}) sent {counts['sent']}, waiting "
                          f"{counts['pending'] + counts['sending']}, skipped {counts['skipped']}, failed "
                          f"{counts['failed']}; opened {figures['opened']}, clicked {figures['clicked']}, "
                          f"unsubscribed {figures['unsubscribed']}", highlight=False)


@welcome_app.command("rm")
def rm(list_slug: str = typer.Argument(..., metavar="LIST"),
       position: int = typer.Argument(..., help="The email's number in `welcome ls`.")) -> None:
    """Remove an email from the series: nobody gets it from now on (its send and figures remain)."""
    with db() as session:
        mailing_list = mailing_lists.get_list(session, list_slug)
        try:
            step = sends.remove_welcome_step(session, mailing_list.id, position)
        except sends.SendError as exc:
            raise fail(str(exc)) from exc
        console.print(f"removed welcome email {position} of {mailing_list.slug} (send {step.send_id} cancelled)",
                      highlight=False)


@welcome_app.command("run")
def run() -> None:
    """Send every welcome email now due (beat does this every 30 s; without a broker, run this from cron)."""
    console.print(f"{sends.run_welcome_series()} welcome emails admitted")


def register(app: typer.Typer) -> None:
    app.add_typer(welcome_app, name="welcome")
