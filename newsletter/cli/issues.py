"""CLI commands for issues: render to files, lint, and preview in a browser."""

from __future__ import annotations

import tempfile
from pathlib import Path

import typer
import uvicorn
from rich.text import Text
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from mailer.batch import Content, Recipient
from mailer.db import session_scope
from mailer.issue import Issue, IssueError, field_problems, load_issue
from mailer.message import encode_message, personal_subject, personalize
from mailer.quality import SPAM_GOAL, measure_contrast, spam_score
from mailer.render import RenderedIssue, RenderError, render_issue
from mailer.settings import get_settings
from newsletter.cli.common import console, err
from newsletter.web.preview import preview_app
from subscribers import fields
from subscribers.models import MailingList
from worker import content as send_content


def _load_and_render(path: Path, force: bool) -> tuple[Issue, RenderedIssue]:
    try:
        issue = load_issue(path)
        return issue, render_issue(issue, force=force)
    except FileNotFoundError:
        err.print(f"{path}: no such file", style="red", highlight=False)
    except IssueError as exc:
        for problem in exc.problems:
            err.print(str(problem), style="red", highlight=False)
        err.print(f"{len(exc.problems)} problem(s); nothing was written.")
    except RenderError as exc:
        err.print(f"{path}: {exc}", style="red", highlight=False)
    raise typer.Exit(1)


def _known_list(slug: str | None) -> MailingList | None:
    """The issue's list from the database, when there is one (a fresh checkout renders without any)."""
    if not slug:
        return None
    try:
        with session_scope() as session:
            found = session.scalar(select(MailingList).where(MailingList.slug == slug))
            if found is not None:
                session.expunge(found)
            return found
    except SQLAlchemyError:
        return None


def sample(issue: Issue, rendered: RenderedIssue) -> tuple[Content, Recipient]:
    """One sample subscriber's copy of the issue as its list would send it, made by the send path's own calls (the
    same rendering for the list, headers and bytes as a send; only the personal values, Date and Message-ID differ).
    """
    mailing_list = _known_list(issue.list_slug) or MailingList(slug=issue.list_slug or "sample", name=issue.title,
                                                               language="en")
    content, recipient, _rendered = send_content.sample_issue(issue, mailing_list, get_settings())
    return content, recipient


def render(issue_path: Path = typer.Argument(..., help="The issue's Markdown file."),
           out: Path = typer.Option(..., "--out", help="Directory to write email.html, email.txt, web.html, "
                                                       "message.eml into."),
           force: bool = typer.Option(False, help="Write even if over the size budget.")) -> None:
    """Render an issue to files and print their sizes."""
    issue, rendered = _load_and_render(issue_path, force)
    out.mkdir(parents=True, exist_ok=True)
    content, recipient = sample(issue, rendered)
    html, text = personalize(content, recipient)
    files = {
        "email.html": html.encode(),
        "email.txt": text.encode(),
        "web.html": rendered.web_html.encode(),
        "message.eml": encode_message(content, recipient, message_id_domain=get_settings().mail_domain)[0],
    }
    for name, data in files.items():
        (out / name).write_bytes(data)
        console.print(f"{out / name}  {len(data) / 1024:6.1f} KB", highlight=False)
    for warning in rendered.warnings:
        err.print(f"warning: {warning}", style="yellow", highlight=False)
    console.print(f"{len(issue.stories)} stories, subject: {personal_subject(content, recipient)}", highlight=False)


def _field_check(issue: Issue, path: Path, slug: str) -> bool:
    """Print the issue's uses of fields the list does not define; True when there is one. An unknown list is an
    error too: a check against nothing would pass."""
    try:
        with session_scope() as session:
            list_id = session.scalar(select(MailingList.id).where(MailingList.slug == slug))
            known = None if list_id is None else fields.field_names(session, list_id)
    except SQLAlchemyError as exc:
        err.print(f"error: cannot read list '{slug}': {type(exc).__name__}", style="red", highlight=False)
        return True
    if list_id is None:
        err.print(f"error: no list '{slug}'", style="red", highlight=False)
        return True
    assert known is not None
    problems = field_problems(issue, known, str(path))
    for problem in problems:
        err.print(str(problem), style="red", highlight=False)
    return bool(problems)


def check(issue_path: Path = typer.Argument(..., help="The issue's Markdown file."),
          measure: bool = typer.Option(True, help="Run SpamAssassin and the Chromium contrast check when present."),
          list_slug: str | None = typer.Option(None, "--list", help="Also check that every subscriber.fields.X "
                                                                    "merge tag is a field of this list.")
          ) -> None:
    """Lint an issue (format, links, alt text, merge tags, size against Gmail's clip, the links' base URL) and
    measure what a subscriber's copy scores: SpamAssassin local rules and the lowest text contrast in light and
    dark mode."""
    issue, rendered = _load_and_render(issue_path, force=True)
    settings = get_settings()
    failed = any("clips" in w for w in rendered.warnings)
    if list_slug is not None:
        failed = _field_check(issue, issue_path, list_slug) or failed
    for warning in rendered.warnings:
        err.print(f"warning: {warning}", style="yellow", highlight=False)
    link_problem = settings.base_url_problem()
    if link_problem:
        failed = failed or settings.production
        label = "error" if settings.production else "warning"
        err.print(f"{label}: {link_problem}", style="red" if settings.production else "yellow", highlight=False)
    console.print(Text.assemble(("ok", "green"), f" {issue_path}: {len(issue.stories)} stories, "
                                f"{len(issue.links)} links, HTML {rendered.html_bytes / 1024:.1f} KB of Gmail's "
                                f"{settings.html_max_bytes / 1024:.0f} KB clip"), highlight=False)
    if measure:
        failed = _measure(issue, rendered) or failed
    if failed:
        raise typer.Exit(1)


def _measure(issue: Issue, rendered: RenderedIssue) -> bool:
    """Print the spam score and the lowest contrast of a sample subscriber's copy; True when one fails its goal."""
    content, recipient = sample(issue, rendered)
    failed = False
    report = spam_score(encode_message(content, recipient, message_id_domain=get_settings().mail_domain)[0])
    if report is None:
        console.print("spam score: skipped (spamassassin is not installed)")
    else:
        failed = report.score > SPAM_GOAL
        colour = "red" if failed else "green"
        console.print(Text.assemble("spam score: ", (f"{report.score:.1f}", colour),
                                    f" (SpamAssassin local rules, goal <= {SPAM_GOAL}): "
                                    f"{', '.join(report.rules) or 'no rules hit'}"), highlight=False)
    with tempfile.TemporaryDirectory() as workdir:
        runs = measure_contrast(personalize(content, recipient)[0], Path(workdir))
    if runs is None:
        console.print("contrast: skipped (needs Chromium and Playwright)")
    elif runs:
        low = [run for run in runs if not run.ok]
        worst = min(runs, key=lambda run: run.ratio / run.required)
        colour = "red" if low else "green"
        console.print(Text.assemble("contrast: lowest ", (f"{worst.ratio:.2f}:1", colour),
                                    f" over {len(runs)} text runs (light and dark, 375 and 1024 px)"),
                      highlight=False)
        for run in sorted(low, key=lambda run: run.ratio)[:10]:
            err.print(f"  {run}", style="red", highlight=False)
        failed = failed or bool(low)
    return failed


def preview(issue_path: Path = typer.Argument(..., help="The issue's Markdown file."),
            host: str = typer.Option("127.0.0.1"), port: int = typer.Option(8001)) -> None:
    """Serve the rendered issue at phone and desktop widths side by side (re-rendered on every reload)."""
    _load_and_render(issue_path, force=True)  # fail fast with the located errors
    console.print(f"Previewing {issue_path} on http://{host}:{port}/ (Ctrl+C to stop)")
    uvicorn.run(preview_app(issue_path), host=host, port=port, log_level="warning")


def register(app: typer.Typer) -> None:
    app.command("render")(render)
    app.command("check")(check)
    app.command("preview")(preview)
