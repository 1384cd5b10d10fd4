"""The JSON API (`/api/v1`, OpenAPI at `/api/v1/openapi.json`) for automation: the same rules as the UI.

It is its own FastAPI app mounted under /api/v1, so its OpenAPI document describes exactly the API (and
schemathesis can test exactly that). Errors are JSON objects `{"error": "..."}`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException

from mailer.issue import IssueError, parse_issue
from mailer.render import RenderError, render_issue
from mailer.store import find_issue, issues_page, save_issue
from newsletter.auth import Principal
from newsletter.web import api_segments
from newsletter.web.api_support import bad as _bad
from newsletter.web.api_support import list_or_404 as _list
from newsletter.web.deps import api_admin, api_user, db_session
from newsletter.web.embed import json_router
from subscribers import audience, fields, mailing_lists, privacy, queries, service, staff
from subscribers.models import ConsentSource, ListField, MailingList, Subscriber, SubscriptionStatus, SuppressionReason
from subscribers.queries import ListOrder
from subscribers.segments import SegmentError
from subscribers.service import Refusal
from worker import reports, sends
from worker.engagement_report import send_report
from worker.models import Send
from worker.notifications import notify_after_commit
from worker.sends import SendAction


class ListIn(BaseModel):
    slug: str = Field(min_length=1, max_length=100, pattern=r"^[a-z0-9_-]+$")
    name: str = Field(min_length=1, max_length=200)
    double_opt_in: bool = True


class ListOut(BaseModel):
    slug: str
    name: str
    double_opt_in: bool
    counts: dict[str, int]


class SubscriberIn(BaseModel):
    email: str = Field(max_length=320)
    list: str = Field(max_length=100)
    name: str = Field(default="", max_length=200)
    confirmed: bool = False
    consent_source: str = Field(default="", max_length=500)


class SubscriberPatch(BaseModel):
    name: str | None = Field(default=None, max_length=200)
    attributes: dict[str, str | None] | None = Field(
        default=None, description="Custom values to set (a merge: null or \"\" removes a key, keys not named stay). "
                                  "Keys are identifiers of up to 64 characters; values at most 1,000 characters.")


class SubscriberOut(BaseModel):
    id: int
    email: str
    name: str
    subscriptions: dict[str, str]
    attributes: dict[str, Any] = Field(default_factory=dict)


class UnsubscribeIn(BaseModel):
    list: str | None = Field(default=None, max_length=100)


class SuppressionIn(BaseModel):
    email: str = Field(max_length=320)
    note: str = Field(default="", max_length=500)


class IssueIn(BaseModel):
    markdown: str = Field(max_length=500_000)


class SubscriberPageOut(BaseModel):
    items: list[SubscriberOut]
    next_after: int | None = Field(description="Pass as `after` for the next page; null on the last page.")


class SendListOut(BaseModel):
    id: int
    issue: str
    list: str
    status: str
    counters: dict[str, int]
    figures: dict[str, int] | None


class IssueOut(BaseModel):
    id: int
    slug: str
    subject: str
    html_bytes: int


class PreviewOut(BaseModel):
    subject: str
    html: str
    text: str
    warnings: list[str]


class SendIn(BaseModel):
    issue_id: int = Field(ge=1, le=2**62)
    list: str = Field(max_length=100)
    scheduled_at: datetime | None = None
    allow_resend: bool = False
    segment: str | None = Field(default=None, max_length=100, description="Only this segment of the list.")


class FieldIn(BaseModel):
    name: str = Field(min_length=1, max_length=64, description="A letter, then lowercase letters, digits or _.")
    type: fields.FieldType = fields.FieldType.TEXT
    options: list[str] = Field(default=[], max_length=fields.MAX_OPTIONS,
                               description="The allowed values of a oneof field.")
    default: str | None = Field(default=None, max_length=fields.MAX_VALUE,
                                description="The value when a subscriber has none, as text (e.g. \"42\", \"yes\").")
    subscriber_editable: bool = False


class FieldOut(BaseModel):
    name: str
    type: str
    options: list[str]
    default: str | int | float | bool | None
    subscriber_editable: bool


class CountOut(BaseModel):
    matching: int


class SendOut(BaseModel):
    id: int
    status: str
    reason: str
    counters: dict[str, int]


class Problem(BaseModel):
    error: str


ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": Problem} for code in (400, 401, 403, 404, 409, 422)}
api_app = FastAPI(title="Newsletter API", version="1", docs_url=None, redoc_url=None,
                  openapi_url="/openapi.json", responses=ERRORS)


api_app.include_router(json_router)
api_app.include_router(api_segments.router)


@api_app.exception_handler(StarletteHTTPException)
async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)


@api_app.exception_handler(RequestValidationError)
async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid request')}"}, status_code=422)


def _list_out(mailing_list: MailingList, counts: dict[str, int]) -> ListOut:
    return ListOut(slug=mailing_list.slug, name=mailing_list.name, double_opt_in=mailing_list.double_opt_in,
                   counts=counts)


@api_app.get("/lists", response_model=list[ListOut])
def get_lists(user: Principal = Depends(api_user), session: Session = db_session) -> list[ListOut]:
    return [_list_out(row.mailing_list, row.counts) for row in queries.lists_with_counts(session, ListOrder.SLUG)]


@api_app.post("/lists", response_model=ListOut, status_code=201)
def post_list(body: ListIn, user: Principal = Depends(api_admin), session: Session = db_session) -> ListOut:
    try:
        created = mailing_lists.create_list(session, body.slug, body.name, double_opt_in=body.double_opt_in)
    except service.ServiceError as exc:
        raise _bad(str(exc), 409) from exc
    session.commit()
    return _list_out(created, mailing_lists.list_counts(session, created.id))


@api_app.get("/lists/{slug}", response_model=ListOut)
def get_list(slug: str, user: Principal = Depends(api_user), session: Session = db_session) -> ListOut:
    mailing_list = _list(session, slug)
    return _list_out(mailing_list, mailing_lists.list_counts(session, mailing_list.id))


def _subscriber_out(session: Session, subscriber: Subscriber) -> SubscriberOut:
    memberships = queries.memberships(session, [subscriber.id])[subscriber.id]
    return SubscriberOut(id=subscriber.id, email=subscriber.email, name=subscriber.name,
                         subscriptions={m.mailing_list.slug: m.status.value for m in memberships},
                         attributes=subscriber.attributes or {})


def _subscriber(session: Session, subscriber_id: int) -> Subscriber:
    found = queries.find_subscriber(session, subscriber_id)
    if found is None or found.erased_at is not None:
        raise _bad("No such subscriber.", 404)
    return found


@api_app.post("/subscribers", response_model=SubscriberOut, status_code=201)
def post_subscriber(body: SubscriberIn, user: Principal = Depends(api_admin),
                    session: Session = db_session) -> SubscriberOut:
    mailing_list = _list(session, body.list)
    try:
        outcome = service.subscribe(session, mailing_list, body.email, body.name, source=ConsentSource.API,
                                    confirmed=body.confirmed, consent_note=body.consent_source)
    except (service.InvalidEmail, service.ServiceError) as exc:
        raise _bad(str(exc), 422) from exc
    if outcome.refused is Refusal.SUPPRESSED:
        raise _bad("This address is suppressed; it cannot be subscribed through the API.", 409)
    assert outcome.subscription is not None
    notify_after_commit(session, outcome.notify)
    subscriber = queries.find_subscriber(session, outcome.subscription.subscriber_id)
    assert subscriber is not None
    session.commit()
    return _subscriber_out(session, subscriber)


@api_app.get("/subscribers", response_model=SubscriberPageOut)
def get_subscribers(list: str = Query("", max_length=100), status: SubscriptionStatus | None = None,
                    search: str = Query("", max_length=320), after: int = Query(0, ge=0),
                    limit: int = Query(50, ge=1, le=500), user: Principal = Depends(api_user),
                    session: Session = db_session) -> SubscriberPageOut:
    """Subscribers by id, a page at a time (keyset: pass `next_after` as `after`), filtered by list, status, text."""
    found = queries.search_subscribers(session, search=search, list_slug=list.strip().lower(), status=status,
                                       after=after, limit=limit)
    return SubscriberPageOut(items=[SubscriberOut(id=row.subscriber.id, email=row.subscriber.email,
                                                  name=row.subscriber.name,
                                                  subscriptions={m.mailing_list.slug: m.status.value
                                                                 for m in row.memberships},
                                                  attributes=row.subscriber.attributes or {})
                                    for row in found.rows], next_after=found.next_after)


@api_app.get("/subscribers/{subscriber_id}", response_model=SubscriberOut)
def get_subscriber(subscriber_id: int, user: Principal = Depends(api_user),
                   session: Session = db_session) -> SubscriberOut:
    return _subscriber_out(session, _subscriber(session, subscriber_id))


@api_app.patch("/subscribers/{subscriber_id}", response_model=SubscriberOut)
def patch_subscriber(subscriber_id: int, body: SubscriberPatch, user: Principal = Depends(api_admin),
                     session: Session = db_session) -> SubscriberOut:
    """Change the name and custom values; the consent trail records the change and the token's owner."""
    subscriber = _subscriber(session, subscriber_id)
    try:
        staff.update_subscriber(session, subscriber.id, name=body.name, attributes=body.attributes,
                                actor=user.email, source=ConsentSource.API)
    except service.ServiceError as exc:
        raise _bad(str(exc), 422) from exc
    session.commit()
    return _subscriber_out(session, subscriber)


@api_app.post("/subscribers/{subscriber_id}/unsubscribe", response_model=SubscriberOut)
def unsubscribe_subscriber(subscriber_id: int, body: UnsubscribeIn, user: Principal = Depends(api_admin),
                           session: Session = db_session) -> SubscriberOut:
    subscriber = _subscriber(session, subscriber_id)
    list_id = _list(session, body.list).id if body.list else None
    service.unsubscribe(session, subscriber.id, list_id, source=ConsentSource.API)
    session.commit()
    return _subscriber_out(session, subscriber)


@api_app.delete("/subscribers/{subscriber_id}", status_code=204)
def erase_subscriber(subscriber_id: int, user: Principal = Depends(api_admin),
                     session: Session = db_session) -> None:
    privacy.erase(session, _subscriber(session, subscriber_id).id, source=ConsentSource.API)
    session.commit()


@api_app.get("/suppressions", response_model=list[str])
def get_suppressions(user: Principal = Depends(api_admin), session: Session = db_session) -> list[str]:
    return [s.email for s in queries.recent_suppressions(session, 1000) if s.email]


@api_app.post("/suppressions", status_code=201, response_model=dict[str, str])
def post_suppression(body: SuppressionIn, user: Principal = Depends(api_admin),
                     session: Session = db_session) -> dict[str, str]:
    try:
        address = service.normalise_email(body.email, check_deliverability=False)
    except service.InvalidEmail as exc:
        raise _bad(str(exc), 422) from exc
    service.suppress(session, address, SuppressionReason.MANUAL, source=ConsentSource.API, note=body.note)
    session.commit()
    return {"email": address}


@api_app.delete("/suppressions/{email}", status_code=204)
def delete_suppression(email: str, user: Principal = Depends(api_admin),
                       session: Session = db_session) -> None:
    try:
        address = service.normalise_email(email, check_deliverability=False)
    except service.InvalidEmail as exc:
        raise _bad(str(exc), 422) from exc
    if not service.unsuppress(session, address, source=ConsentSource.API):
        raise _bad("That address is not suppressed.", 404)
    session.commit()


@api_app.get("/issues", response_model=list[IssueOut])
def get_issues(before: int | None = Query(None, ge=1), limit: int = Query(50, ge=1, le=200),
               user: Principal = Depends(api_user), session: Session = db_session) -> list[IssueOut]:
    """Issues, newest first; pass the last id as `before` for the next page."""
    return [IssueOut(id=r.id, slug=r.slug, subject=r.subject, html_bytes=len((r.html or "").encode()))
            for r in issues_page(session, limit, before)]


@api_app.get("/sends", response_model=list[SendListOut])
def get_sends(before: int | None = Query(None, ge=1), limit: int = Query(20, ge=1, le=200),
              user: Principal = Depends(api_user), session: Session = db_session) -> list[SendListOut]:
    """Sends, newest first, with counters and what came back; pass the last id as `before` for the next page."""
    return [SendListOut(id=row.send.id, issue=row.issue_slug, list=row.list_slug, status=row.send.status.value,
                        counters=row.counts, figures=row.figures)
            for row in reports.recent_sends(session, limit, with_figures=True, before=before)]


@api_app.post("/issues", response_model=IssueOut, status_code=201)
def post_issue(body: IssueIn, user: Principal = Depends(api_user), session: Session = db_session) -> IssueOut:
    try:
        record = save_issue(session, body.markdown, filename="api")
    except (IssueError, RenderError) as exc:
        raise _bad(str(exc), 422) from exc
    session.commit()
    return IssueOut(id=record.id, slug=record.slug, subject=record.subject,
                    html_bytes=len((record.html or "").encode()))


@api_app.post("/issues/preview", response_model=PreviewOut)
def preview_issue(body: IssueIn, user: Principal = Depends(api_user)) -> PreviewOut:
    try:
        rendered = render_issue(parse_issue(body.markdown, "api"), force=True)
    except IssueError as exc:
        raise _bad(str(exc), 422) from exc
    return PreviewOut(subject=rendered.subject, html=rendered.html, text=rendered.text, warnings=rendered.warnings)


def _send_out(session: Session, send_id: int) -> SendOut:
    progress = reports.send_progress(session, send_id)
    if progress is None:
        raise _bad("No such send.", 404)
    return SendOut(id=send_id, status=progress.status.value, reason=progress.reason, counters=progress.counts)


def _send(session: Session, send_id: int) -> Send:
    found = reports.find_send(session, send_id)
    if found is None:
        raise _bad("No such send.", 404)
    return found


@api_app.post("/sends", response_model=SendOut, status_code=201)
def post_send(body: SendIn, user: Principal = Depends(api_user), session: Session = db_session) -> SendOut:
    mailing_list = _list(session, body.list)
    if find_issue(session, body.issue_id) is None:
        raise _bad("No such issue.", 404)
    scheduled = body.scheduled_at
    if scheduled is not None and scheduled.tzinfo is None:
        raise _bad("scheduled_at needs a time zone offset (e.g. 2026-11-27T08:00:00Z).", 422)
    try:
        options = sends.SendOptions(scheduled_at=scheduled, allow_resend=body.allow_resend, created_by=user.email,
                                    segment=body.segment)
        send = sends.create(session, body.issue_id, mailing_list.id, options)
    except sends.SendError as exc:
        raise _bad(str(exc), 409) from exc
    session.commit()  # inline mode runs the send right here, in other sessions
    session.expire_all()
    return _send_out(session, send.id)


def _field_out(field: ListField) -> FieldOut:
    return FieldOut(name=field.name, type=field.type, options=list(field.options or ()), default=field.default,
                    subscriber_editable=field.subscriber_editable)


@api_app.get("/lists/{slug}/fields", response_model=list[FieldOut])
def get_fields(slug: str, user: Principal = Depends(api_user), session: Session = db_session) -> list[FieldOut]:
    """A list's custom fields in definition order (the order of the export's columns)."""
    return [_field_out(field) for field in fields.fields_of(session, _list(session, slug).id)]


@api_app.post("/lists/{slug}/fields", response_model=FieldOut, status_code=201)
def post_field(slug: str, body: FieldIn, user: Principal = Depends(api_admin),
               session: Session = db_session) -> FieldOut:
    """Define a field: 422 for a bad name, option or default, 409 when the list already has it."""
    mailing_list = _list(session, slug)
    exists = body.name.strip().lower() in fields.field_names(session, mailing_list.id)
    try:
        field = fields.define_field(session, mailing_list, body.name, body.type.value, options=body.options,
                                    default=body.default, editable=body.subscriber_editable)
    except service.ServiceError as exc:
        raise _bad(str(exc), 409 if exists else 422) from exc
    session.commit()
    return _field_out(field)


@api_app.get("/segments/count", response_model=CountOut)
def count_segment(list: str, where: str = Query(max_length=2000),
                  user: Principal = Depends(api_user), session: Session = db_session) -> CountOut:
    """How many subscribers an expression matches now (the admin's live count uses the same)."""
    mailing_list = _list(session, list)
    try:
        return CountOut(matching=audience.count(session, mailing_list.id, where))
    except SegmentError as exc:
        raise _bad(exc.short, 422) from exc


@api_app.get("/sends/{send_id}/report")
def get_send_report(send_id: int, user: Principal = Depends(api_user),
                    session: Session = db_session) -> dict[str, Any]:
    """How a send did: unique people who opened and clicked (machines counted apart), per link, per hour, per domain."""
    report = send_report(session, _send(session, send_id).id)
    assert report is not None
    return report


@api_app.get("/sends/{send_id}", response_model=SendOut)
def get_send(send_id: int, user: Principal = Depends(api_user), session: Session = db_session) -> SendOut:
    return _send_out(session, send_id)


@api_app.post("/sends/{send_id}/{action}", response_model=SendOut)
def control_send(send_id: int, action: SendAction, user: Principal = Depends(api_user),
                 session: Session = db_session) -> SendOut:
    send = _send(session, send_id)
    try:
        sends.control(session, send.id, action, f"{user.email} (API)")
    except sends.SendError as exc:
        raise _bad(str(exc), 409) from exc
    session.commit()  # inline mode continues the send right here, in other sessions
    session.expire_all()
    return _send_out(session, send.id)
