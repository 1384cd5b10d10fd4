"""CLI commands: send an issue, follow and control sends, run the worker and beat."""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from mailer.db import session_scope
from mailer.issue import IssueError, parse_issue
from mailer.render import RenderError
from mailer.settings import MIN_LEDGER_KEEP_DAYS, get_settings
from mailer.store import save_issue
from newsletter.cli.common import console, db, description_column, err, fail
from subscribers import mailing_lists
from worker import reports, retention, sends
from worker.app import celery_app, is_inline
from worker.engagement_report import send_report
from worker.models import SendStatus

sends_app = typer.Typer(help="Sends: progress and control.", invoke_without_command=True)


def _parse_at(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise fail(f"--at {value!r}: use ISO 8601, e.g. 2026-11-27T08:00 (UTC unless an offset is given)") from exc
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    now = datetime.now(UTC)
    if moment <= now:
        # A past time would start the send at once: refuse rather than mail a whole list by a typo.
        raise fail(f"--at {value}: that time is in the past (it is now {now:%Y-%m-%d %H:%M} UTC). "
                   "Give a future time, or leave out --at to send now. Nothing was sent.")
    return moment


def _store_issue(issue_path: Path, force: bool) -> tuple[int, str | None]:
    try:
        source = issue_path.read_text(encoding="utf-8")
        with session_scope() as session:
            record = save_issue(session, source, filename=str(issue_path), force=force)
            return record.id, parse_issue(source, str(issue_path)).list_slug
    except FileNotFoundError as exc:
        raise fail(f"{issue_path}: no such file") from exc
    except IssueError as exc:
        raise fail(str(exc) + "\nNothing was sent.") from exc
    except RenderError as exc:
        raise fail(f"{issue_path}: {exc}\nNothing was sent.") from exc


def send(issue_path: Path = typer.Argument(..., help="The issue's Markdown file."),
         list_slug: str = typer.Option(None, "--list", help="Audience (default: the issue's `list`)."),
         segment: str = typer.Option(None, "--segment", help="Only this segment of the list."),
         at: str = typer.Option(None, help="Schedule for this time (ISO 8601, UTC by default)."),
         wait: bool = typer.Option(False, help="Follow the send with a progress bar until it finishes."),
         test_to: str = typer.Option(None, "--test-to", help="Send one [TEST] copy to this address only."),
         allow_resend: bool = typer.Option(False, help="Send again an issue already sent to this list."),
         force: bool = typer.Option(False, help="Send even if over the size budget.")) -> None:
    """Send (or schedule, or test) an issue. A broken issue fails here, before any email leaves."""
    scheduled_at = _parse_at(at) if at else None  # before anything is stored: a bad time changes nothing
    issue_id, default_list = _store_issue(issue_path, force)
    if test_to:
        with db() as session:
            list_id = mailing_lists.get_list(session, list_slug).id if list_slug else None
            result = sends.send_test(session, issue_id, test_to, list_id=list_id)
        if not result.ok:
            raise fail(f"test send failed: {result.error}")
        console.print(f"test sent to {test_to}")
        return
    slug = list_slug or default_list
    if not slug:
        raise fail("Say which list: --list SLUG (or `list:` in the issue's front matter).")
    options = sends.SendOptions(allow_resend=allow_resend, scheduled_at=scheduled_at,
                                created_by="cli", segment=segment)
    link_problem = get_settings().base_url_problem()
    if link_problem and not get_settings().production:  # production refuses in sends.create, with this message
        err.print(f"[yellow]warning: {link_problem}[/yellow]", highlight=False)
    with _progress() as progress:
        bar = progress.add_task("send", total=None, visible=False)

        def advance(done: int, planned: int) -> None:
            progress.update(bar, description=f"send {send_id}", completed=done, total=planned, visible=True)

        try:
            with db() as session:
                mailing_list = mailing_lists.get_list(session, slug)
                send_id = sends.create(session, issue_id, mailing_list.id, options, on_progress=advance).id
                console.print(f"send {send_id}" + (f" scheduled for {at}" if at else " started"))
        except sends.SendError as exc:
            raise fail(str(exc)) from exc
    if at:
        return
    if is_inline():
        _summary(send_id)
    elif wait:
        _follow(send_id)


def _progress() -> Progress:
    return Progress(description_column(), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console)


def _follow(send_id: int) -> None:
    with _progress() as progress:
        task = progress.add_task(f"send {send_id}", total=None)
        while True:
            with session_scope() as session:
                now = reports.send_progress(session, send_id)
            assert now is not None
            progress.update(task, total=now.counts["planned"] or None, completed=now.counts["done"])
            if now.status in (SendStatus.DONE, SendStatus.CANCELLED, SendStatus.FAILED, SendStatus.PAUSED):
                break
            time.sleep(0.5)
    _summary(send_id)


def _summary(send_id: int) -> None:
    with session_scope() as session:
        now = reports.send_progress(session, send_id)
    assert now is not None
    counts = now.counts
    console.print(f"send {send_id}: {now.status.value}; planned {counts['planned']}, sent {counts['sent']}, "
                  f"failed {counts['failed']}, skipped {counts['skipped']}"
                  + (f" ({now.reason})" if now.reason else ""), highlight=False)


@sends_app.callback()
def list_sends(ctx: typer.Context, limit: int = typer.Option(20)) -> None:
    """Recent sends with their counters (subcommands: show, pause, resume, cancel, retry-failed)."""
    if ctx.invoked_subcommand:
        return
    table = Table("id", "issue", "list", "status", "planned", "sent", "failed", "skipped", "scheduled/started")
    with session_scope() as session:
        for row in reports.recent_sends(session, limit):
            send, counts = row.send, row.counts
            moment = send.started_at or send.scheduled_at
            table.add_row(str(send.id), row.issue_slug[:40], row.list_slug, send.status.value,
                          str(counts["planned"]), str(counts["sent"]), str(counts["failed"]), str(counts["skipped"]),
                          moment.strftime("%Y-%m-%d %H:%M") if moment else "")
    console.print(table)


@sends_app.command("report")
def report(send_id: int, as_json: bool = typer.Option(False, "--json", help="The whole report as JSON.")) -> None:
    """How a send did: people (not scanners) who opened and clicked, per link, with machines beside them."""
    with session_scope() as session:
        figures = send_report(session, send_id)
    if figures is None:
        raise fail(f"No send {send_id}.")
    if as_json:
        typer.echo(json.dumps(figures, indent=2))
        return
    opens, clicks = figures["opens"], figures["clicks"]
    console.print(f"send {send_id}: sent {figures['sent']}, delivered {figures['delivered']}", highlight=False)
    console.print(f"  opened by people  {opens['unique_human']} ({opens['rate']:.1%}); opens {opens['human']}, "
                  f"by machines {opens['machine']}", highlight=False)
    console.print(f"  clicked by people {clicks['unique_human']} ({clicks['rate']:.1%}, "
                  f"{clicks['click_to_open']:.1%} of openers); clicks {clicks['human']}, by machines "
                  f"{clicks['machine']}", highlight=False)
    console.print(f"  bounced {figures['bounces']['hard']} hard, {figures['bounces']['soft']} soft; complaints "
                  f"{figures['complaints']}; unsubscribed {figures['unsubscribes']}", highlight=False)
    if figures["links"]:
        table = Table("#", "link", "people", "clicks", "machines")
        for link in figures["links"]:
            table.add_row(str(link["position"]), link["url"], str(link["unique_human"]), str(link["human"]),
                          str(link["machine"]))
        console.print(table)


@sends_app.command("show")
def show(send_id: int) -> None:
    """One send: status, reason, counters and what came back."""
    with session_scope() as session:
        detail = reports.send_detail(session, send_id)
        if detail is None:
            raise fail(f"No send {send_id}.")
        console.print(Text.assemble((f"send {detail.send.id}", "bold"), f": {detail.send.status.value}"),
                      highlight=False)
        if detail.send.status_reason:
            console.print(f"reason: {detail.send.status_reason}", highlight=False)
    for key in ("planned", "pending", "sending", "sent", "failed", "skipped"):
        console.print(f"  {key:<9} {detail.counts[key]}")
    for key, value in detail.figures.items():
        console.print(f"  {key:<13} {value}")


def _control(action: sends.SendAction, send_id: int) -> None:
    try:
        with db() as session:
            affected = sends.control(session, send_id, action, "the CLI")
    except sends.SendError as exc:
        raise fail(str(exc)) from exc
    if action is sends.SendAction.CANCEL:
        console.print(f"{affected} recipients will not get it")
    elif action is sends.SendAction.RETRY_FAILED:
        console.print(f"{affected} failed recipients queued again")
    _summary(send_id)


@sends_app.command("pause")
def pause_cmd(send_id: int) -> None:
    """Stop taking new batches at once (in-flight batches finish)."""
    _control(sends.SendAction.PAUSE, send_id)


@sends_app.command("resume")
def resume_cmd(send_id: int) -> None:
    """Continue a paused send from the ledger; on a running send, re-enqueue its open ranges (a lost queue)."""
    _control(sends.SendAction.RESUME, send_id)


@sends_app.command("cancel")
def cancel_cmd(send_id: int) -> None:
    """Cancel: nobody else gets it."""
    _control(sends.SendAction.CANCEL, send_id)


@sends_app.command("retry-failed")
def retry_failed_cmd(send_id: int) -> None:
    """Queue only the failed recipients again."""
    _control(sends.SendAction.RETRY_FAILED, send_id)


@sends_app.command("compact")
def compact_cmd(older_than: int = typer.Option(
        ..., "--older-than", min=MIN_LEDGER_KEEP_DAYS,
        help=f"Days since a send finished (at least {MIN_LEDGER_KEEP_DAYS}: late bounces need the rows).")) -> None:
    """Keep finished sends' figures and remove their per-recipient rows (NEWSLETTER_LEDGER_KEEP_DAYS does this
    daily in beat). Counters, figures and reports read the same afterwards."""
    done = retention.compact(older_than)
    console.print(f"{len(done.sends)} sends compacted, {done.rows} delivery rows removed", highlight=False)


def worker(concurrency: int = typer.Option(2), queues: str = typer.Option("send,housekeeping"),
           hostname: str = typer.Option(None), loglevel: str = typer.Option("INFO")) -> None:
    """Start a Celery worker with our app (needs NEWSLETTER_BROKER_URL).

    The process becomes `celery -A worker.app` (exec), so it holds the worker's code only: the CLI, the web app and
    what they import would otherwise sit in every pool process (a third of its memory).
    """
    if not get_settings().broker_url:
        raise fail("NEWSLETTER_BROKER_URL is not set: with no broker, sends run inline and need no worker.")
    argv = [sys.executable, "-m", "celery", "--app=worker.app:celery_app", "worker", f"--concurrency={concurrency}",
            f"--queues={queues}", f"--loglevel={loglevel}", "--without-gossip", "--without-mingle"]
    if hostname:
        argv.append(f"--hostname={hostname}")
    sys.stdout.flush()
    os.execv(sys.executable, argv)  # noqa: S606 (our own interpreter and fixed arguments)


def beat(loglevel: str = typer.Option("INFO")) -> None:
    """Start Celery beat: scheduled sends, lease sweeping, purging unconfirmed sign-ups."""
    celery_app.start(["beat", f"--loglevel={loglevel}"])


def register(app: typer.Typer) -> None:
    app.command("send")(send)
    app.add_typer(sends_app, name="sends")
    app.command("worker")(worker)
    app.command("beat")(beat)
