"""Keep an issue's source and rendered parts in the database, keyed by its slug, for sends and the archive."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer.db import utcnow
from mailer.issue import Issue, parse_issue
from mailer.models import IssueRecord
from mailer.render import RenderedIssue, render_issue


def save_issue(session: Session, source: str, *, filename: str = "<issue>", force: bool = False) -> IssueRecord:
    """Parse, render and upsert by slug. Raises IssueError / RenderError before anything is stored."""
    issue = parse_issue(source, filename)
    rendered = render_issue(issue, force=force)
    return store_rendered(session, issue, rendered, source)


def store_rendered(session: Session, issue: Issue, rendered: RenderedIssue, source: str) -> IssueRecord:
    record = session.scalar(select(IssueRecord).where(IssueRecord.slug == issue.slug))
    if record is None:
        record = IssueRecord(slug=issue.slug, source=source, subject=issue.subject)
        session.add(record)
    record.source = source
    record.subject = rendered.subject
    record.preheader = rendered.preheader
    record.html = rendered.html
    record.text = rendered.text
    record.web_html = rendered.web_html
    record.updated_at = utcnow()
    session.flush()
    return record
