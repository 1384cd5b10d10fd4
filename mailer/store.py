"""Keep an issue's source and rendered parts in the database, keyed by its slug, for sends and the archive."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer.db import utcnow
from mailer.issue import Issue, parse_issue
from mailer.models import IssueRecord
from mailer.render import RenderedIssue, render_issue

MAX_ID = 2**62  # an id from a URL beyond this cannot exist, and PostgreSQL would refuse it as out of BIGINT range


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
    record.subject = rendered.web_subject or rendered.subject  # merge tags shown with their defaults
    record.preheader = rendered.preheader
    record.html = rendered.html
    record.text = rendered.text
    record.web_html = rendered.web_html
    record.updated_at = utcnow()
    session.flush()
    return record


def update_issue(session: Session, record: IssueRecord, source: str) -> IssueRecord:
    """The editor's save: the same record takes the new source, even when its front matter renames the slug.

    Raises IssueError before anything is stored; the record is left as it was.
    """
    issue = parse_issue(source, record.slug)
    rendered = render_issue(issue, force=True)
    record.slug = issue.slug
    return store_rendered(session, issue, rendered, source)


def find_issue(session: Session, issue_id: int) -> IssueRecord | None:
    return session.get(IssueRecord, issue_id) if 0 < issue_id < MAX_ID else None


def recent_issues(session: Session, limit: int) -> list[IssueRecord]:
    """The most recently edited first."""
    return list(session.scalars(select(IssueRecord).order_by(IssueRecord.updated_at.desc()).limit(limit)))


def issues_page(session: Session, limit: int, before: int | None = None) -> list[IssueRecord]:
    """Issues newest first by id, `before` an id: keyset pagination for the API."""
    query = select(IssueRecord)
    if before is not None:
        query = query.where(IssueRecord.id < min(before, MAX_ID))
    return list(session.scalars(query.order_by(IssueRecord.id.desc()).limit(limit)))


def issue_by_slug(session: Session, slug: str) -> IssueRecord | None:
    return session.scalar(select(IssueRecord).where(IssueRecord.slug == slug))
