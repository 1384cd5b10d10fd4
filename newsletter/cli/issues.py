"""CLI commands for issues: render to files, lint, and preview in a browser."""

from __future__ import annotations

from pathlib import Path

import typer
import uvicorn
from rich.text import Text

from mailer.batch import Content, Recipient
from mailer.issue import Issue, IssueError, load_issue
from mailer.message import build_message
from mailer.placeholders import Key
from mailer.render import RenderedIssue, RenderError, render_issue
from mailer.settings import get_settings
from newsletter.cli.common import console, err
from newsletter.web.preview import preview_app


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


def sample_message(issue: Issue, rendered: RenderedIssue) -> bytes:
    """The message one sample subscriber would receive, with every header a real send sets."""
    settings = get_settings()
    base = settings.base_url.rstrip("/")
    content = Content(subject=rendered.subject, html=rendered.html, text=rendered.text,
                      from_email=settings.from_email, from_name=issue.from_name or settings.from_name,
                      reply_to=settings.reply_to, list_id=f"{issue.title} <{issue.list_slug or 'sample'}."
                                                          f"{settings.mail_domain}>")
    unsubscribe = f"{base}/unsubscribe/SAMPLE-TOKEN"
    recipient = Recipient(email="reader@example.com", unsubscribe_url=unsubscribe, values={
        Key.NAME: "Sample Reader", Key.EMAIL: "reader@example.com", Key.UNSUBSCRIBE_URL: unsubscribe,
        Key.PREFERENCES_URL: f"{base}/preferences/SAMPLE-TOKEN", Key.WEB_URL: f"{base}/archive/{issue.slug}"})
    return build_message(content, recipient, message_id_domain=settings.mail_domain).as_bytes()


def render(issue_path: Path = typer.Argument(..., help="The issue's Markdown file."),
           out: Path = typer.Option(..., "--out", help="Directory to write email.html, email.txt, web.html, "
                                                       "message.eml into."),
           force: bool = typer.Option(False, help="Write even if over the size budget.")) -> None:
    """Render an issue to files and print their sizes."""
    issue, rendered = _load_and_render(issue_path, force)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "email.html": rendered.html.encode(),
        "email.txt": rendered.text.encode(),
        "web.html": rendered.web_html.encode(),
        "message.eml": sample_message(issue, rendered),
    }
    for name, data in files.items():
        (out / name).write_bytes(data)
        console.print(f"{out / name}  {len(data) / 1024:6.1f} KB", highlight=False)
    for warning in rendered.warnings:
        err.print(f"warning: {warning}", style="yellow", highlight=False)
    console.print(f"{len(issue.stories)} stories, subject: {issue.subject}", highlight=False)


def check(issue_path: Path = typer.Argument(..., help="The issue's Markdown file.")) -> None:
    """Lint an issue (format, links, alt text, size budget) without writing anything."""
    issue, rendered = _load_and_render(issue_path, force=True)
    for warning in rendered.warnings:
        err.print(f"warning: {warning}", style="yellow", highlight=False)
    console.print(Text.assemble(("ok", "green"), f" {issue_path}: {len(issue.stories)} stories, "
                                f"{len(issue.links)} links, HTML {rendered.html_bytes / 1024:.1f} KB"),
                  highlight=False)
    if any("clips" in w for w in rendered.warnings):
        raise typer.Exit(1)


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
