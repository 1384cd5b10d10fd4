"""Subscribers: a keyset-paginated search, one person's page (subscriptions, consent trail, deliveries, provider
events), and what an admin may do to them (add one by hand, edit name and values, subscribe to another list,
unsubscribe, resubscribe, suppress, erase). The rules of adding and editing are in `subscribers.staff`."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from newsletter.auth import Principal
from newsletter.web import forms
from newsletter.web.admin.common import admin_router, flash_message, page, redirect
from newsletter.web.csrf import verify_csrf
from newsletter.web.deps import db_session, page_admin, page_user
from subscribers import privacy, queries, service, staff
from subscribers.models import ConsentSource, MailingList, Subscriber, SubscriptionStatus, SuppressionReason
from worker import reports
from worker.notifications import notify_after_commit

router = admin_router()
PAGE_SIZE = 50
STATUSES = [s.value for s in SubscriptionStatus]
ORIGINS = [(origin.value, label) for origin, label in staff.ORIGIN_LABELS.items()]
ORIGIN_VALUES = {origin.value for origin in staff.ConsentOrigin}
FIELD_PREFIX = "field."  # a custom value's form field is named field.KEY


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


def _list_ids(form: FormData) -> list[int]:
    return [int(raw) for raw in form.getlist("list_id")[:1000]
            if isinstance(raw, str) and raw.isdigit() and 0 < int(raw) < queries.MAX_ID]


def _add(session: Session, form: FormData, email: str, user: Principal) -> staff.AddResult:
    """An add from a form: the lists ticked, and the consent chosen (a confirmation email, or confirmed on whose
    word). Raises ServiceError or InvalidEmail with a message for the page."""
    wanted = set(_list_ids(form))
    lists = [m for m in queries.all_lists(session) if m.id in wanted]
    origin = str(form.get("origin") or "")
    result = staff.add_subscriber(session, lists, email, str(form.get("name") or ""), actor=user.email,
                                  confirmed=form.get("mode") == "confirmed",
                                  origin=staff.ConsentOrigin(origin) if origin in ORIGIN_VALUES else None,
                                  vouched_by=str(form.get("vouched_by") or ""))
    notify_after_commit(session, result.notify)
    return result


def _added_message(result: staff.AddResult) -> str:
    parts = [f"Added to {', '.join(result.added)}"] if result.added else []
    if result.unchanged:
        parts.append(f"already on {', '.join(result.unchanged)}")
    return "; ".join(parts) or "Nothing changed"


def _new_page(request: Request, user: Principal, session: Session, form: FormData | None = None,
              flash: str = "", status_code: int = 200) -> HTMLResponse:
    """The add form, filled again with what was typed when it was refused."""
    form = form or FormData()
    return page(request, "subscriber_new.html", user, "subscribers", lists=queries.all_lists(session),
                origins=ORIGINS, form=form, chosen=set(_list_ids(form)), flash=flash, flash_kind="error",
                status_code=status_code)


@router.get("/subscribers/new", response_class=HTMLResponse)
def new_subscriber_page(request: Request, user: Principal = Depends(page_admin),
                        session: Session = db_session) -> HTMLResponse:
    return _new_page(request, user, session)


@router.post("/subscribers/new", dependencies=[Depends(verify_csrf)])
async def add_subscriber(request: Request, user: Principal = Depends(page_admin),
                         session: Session = db_session) -> Response:
    form = await forms.read_form(request)
    try:
        result = _add(session, form, str(form.get("email") or ""), user)
    except (service.ServiceError, service.InvalidEmail) as exc:
        session.rollback()
        return _new_page(request, user, session, form, str(exc), 400)
    session.commit()
    return redirect(f"/admin/subscribers/{result.subscriber_id}", _added_message(result))


@router.get("/subscribers/{subscriber_id}", response_class=HTMLResponse)
def subscriber_page(request: Request, subscriber_id: int, before: int | None = Query(None, ge=1),
                    user: Principal = Depends(page_user), session: Session = db_session) -> HTMLResponse:
    subscriber = queries.find_subscriber(session, subscriber_id)
    if subscriber is None:
        return page(request, "lists.html", user, "subscribers", lists=[], flash="No such subscriber.",
                    flash_kind="error", status_code=404)
    return _subscriber_page(request, user, session, subscriber, before=before, flash=flash_message(request))


def _subscriber_page(request: Request, user: Principal, session: Session, subscriber: Subscriber, *,
                     before: int | None = None, flash: str | None = None, flash_kind: str = "",
                     status_code: int = 200) -> HTMLResponse:
    memberships = queries.memberships(session, [subscriber.id])[subscriber.id]
    subscriptions = [{"list": m.mailing_list, "status": m.status.value} for m in memberships]
    lists: list[MailingList] = queries.all_lists(session)
    on = {m.mailing_list.id for m in memberships if m.status is not SubscriptionStatus.UNSUBSCRIBED}
    activity = reports.subscriber_activity(session, subscriber.id, subscriber.email, before=before)
    return page(request, "subscriber.html", user, "subscribers", subscriber=subscriber, subscriptions=subscriptions,
                consent=queries.consent_timeline(session, subscriber.id), deliveries=activity.deliveries,
                older_than=activity.older_than, events=activity.events, list_names={m.id: m.name for m in lists},
                other_lists=[m for m in lists if m.id not in on], origins=ORIGINS,
                attributes=sorted((subscriber.attributes or {}).items()),
                suppressed=service.is_suppressed(session, subscriber.email), flash=flash, flash_kind=flash_kind,
                status_code=status_code)


@router.post("/subscribers/{subscriber_id}/edit", dependencies=[Depends(verify_csrf)])
async def edit_subscriber(request: Request, subscriber_id: int, user: Principal = Depends(page_admin),
                          session: Session = db_session) -> Response:
    """Name and custom values: each value shown is a field.KEY input (empty removes it), plus one new key."""
    subscriber = queries.find_subscriber(session, subscriber_id)
    if subscriber is None or subscriber.erased_at is not None:
        return redirect("/admin/subscribers", "No such subscriber")
    form = await forms.read_form(request)
    values: dict[str, str | None] = {key[len(FIELD_PREFIX):]: str(value) for key, value in form.items()
                                     if key.startswith(FIELD_PREFIX)}
    new_key = str(form.get("new_key") or "").strip()
    if new_key:
        values[new_key] = str(form.get("new_value") or "")
    try:
        changed = staff.update_subscriber(session, subscriber.id, name=str(form["name"]) if "name" in form else None,
                                          attributes=values, actor=user.email)
    except service.ServiceError as exc:
        session.rollback()
        return _subscriber_page(request, user, session, subscriber, flash=str(exc), flash_kind="error",
                                status_code=400)
    session.commit()
    return redirect(f"/admin/subscribers/{subscriber.id}", "Saved" if changed else "Nothing changed")


@router.post("/subscribers/{subscriber_id}/subscribe", dependencies=[Depends(verify_csrf)])
async def subscribe_to_list(request: Request, subscriber_id: int, user: Principal = Depends(page_admin),
                            session: Session = db_session) -> Response:
    subscriber = queries.find_subscriber(session, subscriber_id)
    if subscriber is None or subscriber.erased_at is not None:
        return redirect("/admin/subscribers", "No such subscriber")
    form = await forms.read_form(request)
    try:
        result = _add(session, form, subscriber.email, user)
    except (service.ServiceError, service.InvalidEmail) as exc:
        session.rollback()
        return _subscriber_page(request, user, session, subscriber, flash=str(exc), flash_kind="error",
                                status_code=400)
    session.commit()
    return redirect(f"/admin/subscribers/{subscriber.id}", _added_message(result))


@router.post("/subscribers/{subscriber_id}/action", dependencies=[Depends(verify_csrf)])
async def subscriber_action(request: Request, subscriber_id: int, user: Principal = Depends(page_admin),
                            session: Session = db_session) -> Response:
    form = await forms.read_form(request)
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
            service.resubscribe(session, subscriber.id, list_id, source=ConsentSource.ADMIN, detail=detail)
        except service.ServiceError as exc:  # a list that does not exist (a forged form)
            return redirect(f"/admin/subscribers/{subscriber.id}", str(exc))
    elif action == "suppress":
        service.suppress(session, subscriber.email, SuppressionReason.MANUAL, source=ConsentSource.ADMIN,
                         note=f"by {user.email}")
    elif action == "erase" and form.get("confirm") == "yes":
        privacy.erase(session, subscriber.id, source=ConsentSource.ADMIN)
        session.commit()
        return redirect("/admin/subscribers", "Erased")
    session.commit()
    return redirect(f"/admin/subscribers/{subscriber.id}", "Done")
