"""The dashboard: every list's counts, the last sends with live progress, and their delivery rates."""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from newsletter.auth import Principal
from newsletter.web.admin.chart import rates_chart
from newsletter.web.admin.common import admin_router, flash_message, page
from newsletter.web.admin.lists import list_rows
from newsletter.web.deps import db_session, page_user
from worker import reports

router = admin_router()
RECENT_SENDS = 10


@router.get("", response_class=HTMLResponse)
def dashboard(request: Request, user: Principal = Depends(page_user),
              session: Session = db_session) -> HTMLResponse:
    recent = reports.recent_sends(session, RECENT_SENDS, with_figures=True)
    sends = [{"send": r.send, "issue": r.issue_slug, "list": r.list_slug, "counts": r.counts} for r in recent]
    chart_rows = [(f"#{r.send.id}", r.figures) for r in reversed(recent) if r.figures is not None]
    return page(request, "dashboard.html", user, "dashboard", lists=list_rows(session), sends=sends,
                chart=rates_chart(chart_rows), flash=flash_message(request))
