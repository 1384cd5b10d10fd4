"""Subscribers: a keyset-paginated search, one person's page (subscriptions, consent trail, deliveries, provider
events), and what an admin may do to them (unsubscribe, resubscribe, suppress, erase)."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from newsletter.auth import Principal
from newsletter.web.admin.common import admin_router, flash_message, page, read_form, redirect
from newsletter.web.csrf import verify_csrf
from newsletter.web.deps import db_session, page_admin, page_user
from subscribers import queries, service
from subscribers.models import ConsentSource, SubscriptionStatus, SuppressionReason
from worker import reports

router = admin_router()
PAGE_SIZE = 50
STATUSES = [s.value for s in SubscriptionStatus]


@router.get("/subscribers", response_class=HTMLResponse)
def subscribers_page(request: Request, q: str = "", list_slug: str = Query("", alias="list"), status: str = "",
                     after: int = 0, user: Principal = Depends(page_user),
                     session: Session = db_session) -> HTMLResponse:
    """Keyset pagination (id > after): constant cost per page at any table size, no COUNT(*) of everything."""
    found = queries.search_subscribers(session, search=q, list_slug=list_slug, after=after, limit=PAGE_SIZE,
                                       status=SubscriptionStatus(status) if status in STATUSES else None)
    rows = [{"subscriber": row.subscriber,
             "subscriptions": [{"slug": m.mailing_list.slug, "status": m.status.value} for m in row.memberships]}
            for row in found.rows]
    next_url = ("/admin/subscribers?" + urlencode({"q": q, "list": list_slug, "status": status,
                                                   "after": found.next_after}) if found.next_after else "")
    return page(request, "subscribers.html", user, "subscribers", rows=rows, q=q, list_slug=list_slug, status=status,
                lists=queries.all_lists(session), statuses=STATUSES, next_after=found.next_after, next_url=next_url)


@router.get("/subscribers/{subscriber_id}", response_class=HTMLResponse)
def subscriber_page(request: Request, subscriber_id: int, user: Principal = Depends(page_user),
                    session: Session = db_session) -> HTMLResponse:
    subscriber = queries.find_subscriber(session, subscriber_id)
    if subscriber is None:
        return page(request, "lists.html", user, "subscribers", lists=[], flash="No such subscriber.",
                    flash_kind="error", status_code=404)
    subscriptions = [{"list": m.mailing_list, "status": m.status.value}
                     for m in queries.memberships(session, [subscriber.id])[subscriber.id]]
    activity = reports.subscriber_activity(session, subscriber.id, subscriber.email)
    return page(request, "subscriber.html", user, "subscribers", subscriber=subscriber, subscriptions=subscriptions,
                consent=queries.consent_timeline(session, subscriber.id), deliveries=activity.deliveries,
                events=activity.events, list_names={m.id: m.name for m in queries.all_lists(session)},
                suppressed=service.is_suppressed(session, subscriber.email), flash=flash_message(request))


@router.post("/subscribers/{subscriber_id}/action", dependencies=[Depends(verify_csrf)])
async def subscriber_action(request: Request, subscriber_id: int, user: Principal = Depends(page_admin),
                            session: Session = db_session) -> Response:
    form = await read_form(request)
    action = str(form.get("action", ""))
    raw_list_id = str(form.get("list_id") or "")
    list_id = int(raw_list_id) if raw_list_id.isdigit() and 0 < int(raw_list_id) < queries.MAX_ID else None
    subscriber = queries.find_subscriber(session, subscriber_id)
    if subscriber is None:
        return redirect("/admin/subscribers", "No such subscriber")
    detail = {"by": user.email}
    if action == "unsubscribe":
        service.unsubscribe(session, subscriber.id, list_id, source=ConsentSource.ADMIN, detail=detail)
    elif action == "resubscribe" and list_id:
        try:
            service.resubscribe(session, subscriber.id, list_id, source=ConsentSource.ADMIN)
        except service.ServiceError as exc:  # a list that does not exist (a forged form)
            return redirect(f"/admin/subscribers/{subscriber.id}", str(exc))
    elif action == "suppress":
        service.suppress(session, subscriber.email, SuppressionReason.MANUAL, source=ConsentSource.ADMIN,
                         note=f"by {user.email}")
    elif action == "erase" and form.get("confirm") == "yes":
        service.erase(session, subscriber.id, source=ConsentSource.ADMIN)
        session.commit()
        return redirect("/admin/subscribers", "Erased")
    session.commit()
    return redirect(f"/admin/subscribers/{subscriber.id}", "Done")
