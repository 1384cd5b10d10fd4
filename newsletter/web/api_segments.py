"""API: segments, saved filters on a list. Saving, changing and deleting one never touches a send already made:
a send keeps the expression it was made with (worker/sends.py), so a segment can be corrected between issues."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from newsletter.auth import Principal
from newsletter.web.api_support import bad, list_or_404
from newsletter.web.deps import api_user, db_session
from subscribers import audience, service
from subscribers.models import MailingList, Segment
from subscribers.segments import MAX_EXPRESSION, SegmentError

router = APIRouter()
WHERE = Field(min_length=1, max_length=MAX_EXPRESSION,
              description='e.g. fields.city = "Berlin" and subscribed_at >= 2024-01-01')


class SegmentIn(BaseModel):
    list: str = Field(max_length=100)
    name: str = Field(min_length=1, max_length=100)
    where: str = WHERE


class SegmentChange(BaseModel):
    where: str = WHERE


class SegmentOut(BaseModel):
    list: str
    name: str
    where: str
    matching: int


def _out(session: Session, mailing_list: MailingList, segment: Segment) -> SegmentOut:
    return SegmentOut(list=mailing_list.slug, name=segment.name, where=segment.expression,
                      matching=audience.count(session, mailing_list.id, segment.expression))


@router.get("/segments", response_model=list[SegmentOut])
def get_segments(list: str | None = None, user: Principal = Depends(api_user),
                 session: Session = db_session) -> list[SegmentOut]:
    list_id = list_or_404(session, list).id if list else None
    return [SegmentOut(list=slug, name=segment.name, where=segment.expression,
                       matching=audience.count(session, segment.list_id, segment.expression))
            for segment, slug in audience.segments_of(session, list_id)]


def _saved(session: Session, mailing_list: MailingList, save: Callable[[], Segment], refused: int) -> SegmentOut:
    """Run a save, answer a broken expression with 422 (and its column) and the service's refusal with `refused`
    (409: the name is taken; 404: there is no such segment), commit, and show the segment as it is now."""
    try:
        segment = save()
    except SegmentError as exc:
        raise bad(exc.short, 422) from exc
    except service.ServiceError as exc:
        raise bad(str(exc), refused) from exc
    session.commit()
    return _out(session, mailing_list, segment)


@router.post("/segments", response_model=SegmentOut, status_code=201)
def post_segment(body: SegmentIn, user: Principal = Depends(api_user),
                 session: Session = db_session) -> SegmentOut:
    mailing_list = list_or_404(session, body.list)
    return _saved(session, mailing_list, lambda: audience.create_segment(
        session, mailing_list, body.name, body.where, created_by=user.email), 409)


@router.patch("/lists/{slug}/segments/{name}", response_model=SegmentOut)
def patch_segment(slug: str, name: str, body: SegmentChange, user: Principal = Depends(api_user),
                  session: Session = db_session) -> SegmentOut:
    """A new expression; sends already made keep theirs."""
    mailing_list = list_or_404(session, slug)
    return _saved(session, mailing_list, lambda: audience.change_segment(session, mailing_list, name, body.where),
                  404)


@router.delete("/lists/{slug}/segments/{name}", status_code=204)
def delete_segment(slug: str, name: str, user: Principal = Depends(api_user),
                   session: Session = db_session) -> Response:
    mailing_list = list_or_404(session, slug)
    try:
        audience.delete_segment(session, mailing_list.id, name)
    except service.ServiceError as exc:
        raise bad(str(exc), 404) from exc
    session.commit()
    return Response(status_code=204)
