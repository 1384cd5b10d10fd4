"""Suppressions (admins only): the newest addresses never to be mailed, adding and removing one with a note."""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from newsletter.auth import Principal
from newsletter.web.admin.common import admin_router, flash_message, page, read_form, redirect
from newsletter.web.csrf import verify_csrf
from newsletter.web.deps import db_session, page_admin
from subscribers import queries, service
from subscribers.models import ConsentSource, SuppressionReason

router = admin_router()
SHOWN = 500


@router.get("/suppressions", response_class=HTMLResponse)
def suppressions_page(request: Request, user: Principal = Depends(page_admin),
                      session: Session = db_session) -> HTMLResponse:
    return page(request, "suppressions.html", user, "suppressions", rows=queries.recent_suppressions(session, SHOWN),
                flash=flash_message(request))


@router.post("/suppressions", dependencies=[Depends(verify_csrf)])
async def suppressions_change(request: Request, user: Principal = Depends(page_admin),
                              session: Session = db_session) -> Response:
    form = await read_form(request)
    try:
        address = service.normalise_email(str(form.get("email", "")), check_deliverability=False)
    except service.InvalidEmail as exc:
        return redirect("/admin/suppressions", str(exc))
    note = f"{form.get('note', '')} (by {user.email})"
    if form.get("action") == "remove":
        service.unsuppress(session, address, source=ConsentSource.ADMIN, note=note)
    else:
        service.suppress(session, address, SuppressionReason.MANUAL, source=ConsentSource.ADMIN, note=note)
    session.commit()
    return redirect("/admin/suppressions", "Saved")
