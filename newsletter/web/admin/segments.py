"""Segments on a list's page: saving one (or changing it, under its name), removing one, and the live count while
staff type an expression.

The count is a small JSON endpoint the page's script asks (debounced) as the expression changes: the number of
recipients it matches now, by the same definition the send's plan uses (`subscribers.audience`), or the parser's
located error. A GET, so it changes nothing and needs no CSRF token; it needs a signed-in session like every page.
The expression is bounded before parsing, and the count is given up after LIVE_COUNT_SECONDS.
"""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session

from newsletter.auth import Principal
from newsletter.web.admin.common import admin_router, read_form, redirect
from newsletter.web.admin.lists import list_view
from newsletter.web.csrf import verify_csrf
from newsletter.web.deps import db_session, page_user
from subscribers import audience, mailing_lists, service
from subscribers.segments import MAX_EXPRESSION, SegmentError

router = admin_router()
LIVE_COUNT_SECONDS = 2.0
NO_STORE = {"Cache-Control": "no-store"}


def _error(message: str, status: int, position: int | None = None) -> JSONResponse:
    body: dict[str, object] = {"error": message}
    if position is not None:
        body["position"] = position
    return JSONResponse(body, status_code=status, headers=NO_STORE)


@router.get("/lists/{slug}/segments/count")
def live_count(slug: str, where: str = "", user: Principal = Depends(page_user),
               session: Session = db_session) -> JSONResponse:
    """`{"count": N}`, or `{"error": "...", "position": P}` (P is the 1-based column of the mistake)."""
    if len(where) > MAX_EXPRESSION:
        return _error(f"The expression is longer than {MAX_EXPRESSION} characters.", 422, MAX_EXPRESSION + 1)
    try:
        mailing_list = mailing_lists.get_list(session, slug)
    except service.ServiceError as exc:
        return _error(str(exc), 404)
    try:
        found = audience.count_within(session, mailing_list.id, where.strip() or None, LIVE_COUNT_SECONDS)
    except SegmentError as exc:
        return _error(exc.short, 422, exc.column)
    except audience.TooSlow as exc:
        return _error(str(exc), 422)
    return JSONResponse({"count": found}, headers=NO_STORE)


@router.post("/lists/{slug}/segments", dependencies=[Depends(verify_csrf)])
async def save_segment(request: Request, slug: str, user: Principal = Depends(page_user),
                       session: Session = db_session) -> Response:
    """Staff may save a segment (as through the API): it only names a part of a list for a later send. Saving
    under a name the list has changes that segment's expression; sends already made keep theirs."""
    try:
        mailing_list = mailing_lists.get_list(session, slug)
    except service.ServiceError:
        return redirect("/admin/lists", "No such list")
    form = await read_form(request)
    name, where = str(form.get("name") or "").strip(), str(form.get("where") or "")
    try:
        if audience.find_segment(session, mailing_list.id, name) is not None:
            segment, done = audience.change_segment(session, mailing_list, name, where), "changed"
        else:
            segment, done = audience.create_segment(session, mailing_list, name, where, created_by=user.email), "saved"
    except (SegmentError, service.ServiceError) as exc:
        session.rollback()
        message = exc.short if isinstance(exc, SegmentError) else str(exc)
        return list_view(request, user, session, mailing_list, flash=message, flash_kind="error", status_code=400,
                         segment_form={"name": name[:200], "where": where[:MAX_EXPRESSION]})
    session.commit()
    return redirect(f"/admin/lists/{slug}", f"Segment {segment.name} {done}")


@router.post("/lists/{slug}/segments/remove", dependencies=[Depends(verify_csrf)])
async def remove_segment(request: Request, slug: str, user: Principal = Depends(page_user),
                         session: Session = db_session) -> Response:
    """Forget a segment; a send made with it keeps the expression it was made with."""
    try:
        mailing_list = mailing_lists.get_list(session, slug)
    except service.ServiceError:
        return redirect("/admin/lists", "No such list")
    name = str((await read_form(request)).get("name") or "")
    try:
        audience.delete_segment(session, mailing_list.id, name)
    except service.ServiceError as exc:
        return redirect(f"/admin/lists/{slug}", str(exc))
    session.commit()
    return redirect(f"/admin/lists/{slug}", f"Segment {name} removed")
