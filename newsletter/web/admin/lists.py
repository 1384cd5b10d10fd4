"""Lists: all of them with their counts, creating one, and one list's settings, custom fields and sign-up form
snippet."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile

from mailer.i18n import supported_languages
from mailer.store import find_issue, recent_issues
from newsletter.auth import Principal
from newsletter.web import embed
from newsletter.web.admin.common import admin_router, flash_message, page, read_form, redirect
from newsletter.web.csrf import verify_csrf
from newsletter.web.deps import db_session, page_admin, page_user
from subscribers import audience, fields, mailing_lists, queries, service
from subscribers.models import MailingList
from worker import reports, sends, welcome

router = admin_router()
ISSUES_OFFERED = 50  # the newest issues, offered for a welcome step


def list_rows(session: Session) -> list[dict[str, Any]]:
    """Every list by name with its counts, as the dashboard and the lists page show them."""
    return [{"list": row.mailing_list, "counts": row.counts} for row in queries.lists_with_counts(session)]


def _lists_page(request: Request, user: Principal, session: Session, flash: str, status_code: int) -> HTMLResponse:
    return page(request, "lists.html", user, "lists", lists=list_rows(session), flash=flash, flash_kind="error",
                status_code=status_code)


def _find_list(request: Request, user: Principal, session: Session, slug: str) -> MailingList | HTMLResponse:
    """The list a page's URL names, or the lists page with a 404 saying there is none."""
    try:
        return mailing_lists.get_list(session, slug)
    except service.ServiceError as exc:
        return _lists_page(request, user, session, str(exc), 404)


def _snippet(mailing_list: MailingList) -> dict[str, str]:
    return embed.snippets(mailing_list)


def list_view(request: Request, user: Principal, session: Session, mailing_list: MailingList,
              **context: Any) -> HTMLResponse:
    """One list's page: settings, segments (with the live count form, see admin/segments.py) and snippets."""
    context.setdefault("segment_form", {})
    return page(request, "list.html", user, "lists", mailing_list=mailing_list, snippet=_snippet(mailing_list),
                counts=mailing_lists.list_counts(session, mailing_list.id), languages=supported_languages(),
                segments=[segment for segment, _slug in audience.segments_of(session, mailing_list.id)],
                fields=fields.fields_of(session, mailing_list.id), field_types=list(fields.FieldType),
                display=fields.display, series=reports.welcome_series(session, mailing_list.id),
                max_steps=welcome.MAX_STEPS, issues=recent_issues(session, ISSUES_OFFERED), **context)


async def _apply_look(mailing_list: MailingList, form: dict[str, Any]) -> None:
    """Language and brand from the list form; a refused field (accent contrast, logo type) changes nothing."""
    mailing_lists.apply_look(mailing_list, mailing_lists.ListLook(
        language=str(form.get("language") or "en"), brand_name=str(form.get("brand_name") or ""),
        logo_url=str(form.get("logo_url") or ""), accent_colour=str(form.get("accent_colour") or ""),
        postal_address=str(form.get("postal_address") or "")))
    upload = form.get("logo_file")
    if isinstance(upload, UploadFile) and upload.filename:
        mailing_lists.set_logo_image(mailing_list, await upload.read(mailing_lists.LOGO_MAX_BYTES + 1))
    elif form.get("logo_remove") == "1":
        mailing_lists.set_logo_image(mailing_list, None)


@router.get("/lists", response_class=HTMLResponse)
def lists_page(request: Request, user: Principal = Depends(page_user),
               session: Session = db_session) -> HTMLResponse:
    return page(request, "lists.html", user, "lists", lists=list_rows(session), flash=flash_message(request))


@router.post("/lists", dependencies=[Depends(verify_csrf)])
async def create_list(request: Request, user: Principal = Depends(page_admin),
                      session: Session = db_session) -> Response:
    form = await read_form(request)
    try:
        created = mailing_lists.create_list(session, str(form.get("slug", "")), str(form.get("name", "")),
                                            double_opt_in=form.get("double_opt_in") == "1")
    except (service.ServiceError, service.InvalidEmail) as exc:
        return _lists_page(request, user, session, str(exc), 400)
    session.commit()
    return redirect(f"/admin/lists/{created.slug}", "List created")


@router.get("/lists/{slug}", response_class=HTMLResponse)
def list_page(request: Request, slug: str, user: Principal = Depends(page_user),
              session: Session = db_session) -> HTMLResponse:
    mailing_list = _find_list(request, user, session, slug)
    if not isinstance(mailing_list, MailingList):
        return mailing_list
    editing = request.query_params.get("edit_segment")  # the segment form, filled to change that segment
    segment = audience.find_segment(session, mailing_list.id, editing) if editing else None
    form = {"name": segment.name, "where": segment.expression} if segment else {}
    return list_view(request, user, session, mailing_list, flash=flash_message(request), segment_form=form)


@router.post("/lists/{slug}", dependencies=[Depends(verify_csrf)])
async def edit_list(request: Request, slug: str, user: Principal = Depends(page_admin),
                    session: Session = db_session) -> Response:
    mailing_list = _find_list(request, user, session, slug)
    if not isinstance(mailing_list, MailingList):
        return mailing_list
    form = await read_form(request)
    try:
        await _apply_look(mailing_list, form)
    except service.ServiceError as exc:
        session.rollback()
        return list_view(request, user, session, mailing_list, flash=str(exc), flash_kind="error", status_code=400)
    try:
        mailing_lists.update_list(mailing_list, name=str(form.get("name") or ""),
                                  from_name=str(form.get("from_name") or ""),
                                  from_email=str(form.get("from_email") or ""),
                                  reply_to=str(form.get("reply_to") or ""),
                                  double_opt_in=form.get("double_opt_in") == "1",
                                  welcome_enabled=form.get("welcome_enabled") == "1")
        mailing_lists.configure_signup(mailing_list, embeddable=form.get("embeddable") == "1",
                                       origins=str(form.get("embed_origins") or "").split(),
                                       thank_you_url=str(form.get("thank_you_url") or ""),
                                       archive_private=form.get("archive_private") == "1")
    except (service.InvalidEmail, service.ServiceError) as exc:
        session.rollback()
        return list_view(request, user, session, mailing_list, flash=str(exc), flash_kind="error", status_code=400)
    session.commit()
    return redirect(f"/admin/lists/{slug}", "Saved")


@router.post("/lists/{slug}/fields", dependencies=[Depends(verify_csrf)])
async def add_field(request: Request, slug: str, user: Principal = Depends(page_admin),
                    session: Session = db_session) -> Response:
    """Define a custom field from the list page's form (options one a line; an empty default means none)."""
    mailing_list = _find_list(request, user, session, slug)
    if not isinstance(mailing_list, MailingList):
        return mailing_list
    form = await read_form(request)
    try:
        field = fields.define_field(session, mailing_list, str(form.get("field_name") or ""),
                                    str(form.get("field_type") or "text"),
                                    options=str(form.get("field_options") or "").splitlines(),
                                    default=str(form.get("field_default") or "") or None,
                                    editable=form.get("field_editable") == "1")
    except service.ServiceError as exc:
        session.rollback()
        return list_view(request, user, session, mailing_list, flash=str(exc), flash_kind="error", status_code=400)
    session.commit()
    return redirect(f"/admin/lists/{slug}", f"Field {field.name} added")


@router.post("/lists/{slug}/fields/remove", dependencies=[Depends(verify_csrf)])
async def remove_field(request: Request, slug: str, user: Principal = Depends(page_admin),
                       session: Session = db_session) -> Response:
    """Remove a definition; subscribers' values stay in their attributes."""
    mailing_list = _find_list(request, user, session, slug)
    if not isinstance(mailing_list, MailingList):
        return mailing_list
    form = await read_form(request)
    try:
        fields.remove_field(session, mailing_list, str(form.get("field_name") or ""))
    except service.ServiceError as exc:
        session.rollback()
        return list_view(request, user, session, mailing_list, flash=str(exc), flash_kind="error", status_code=404)
    session.commit()
    return redirect(f"/admin/lists/{slug}", "Field removed")


def _form_int(value: Any) -> int:
    """A number from a form field, 0 when it is none (no id is 0): a forged field is an unknown id, not a 500."""
    text = str(value or "").strip()
    return int(text) if text.isdigit() and len(text) < 19 else 0


@router.post("/lists/{slug}/welcome", dependencies=[Depends(verify_csrf)])
async def add_welcome_step(request: Request, slug: str, user: Principal = Depends(page_admin),
                           session: Session = db_session) -> Response:
    mailing_list = _find_list(request, user, session, slug)
    if not isinstance(mailing_list, MailingList):
        return mailing_list
    form = await read_form(request)
    issue = find_issue(session, _form_int(form.get("issue_id")))
    try:
        if issue is None:
            raise sends.SendError("Choose an issue.")
        step = sends.add_welcome_step(session, mailing_list.id, issue.id, welcome.parse_delay(str(form.get("after")
                                                                                                     or "")),
                                      created_by=user.email)
    except (sends.SendError, welcome.DelayError) as exc:
        session.rollback()
        return list_view(request, user, session, mailing_list, flash=str(exc), flash_kind="error", status_code=400)
    session.commit()
    return redirect(f"/admin/lists/{slug}#welcome", f"Welcome email added (send {step.send_id})")


@router.post("/lists/{slug}/welcome/remove", dependencies=[Depends(verify_csrf)])
async def remove_welcome_step(request: Request, slug: str, user: Principal = Depends(page_admin),
                              session: Session = db_session) -> Response:
    """By the step's id, not its number: a page opened before another removal must not remove the wrong one."""
    mailing_list = _find_list(request, user, session, slug)
    if not isinstance(mailing_list, MailingList):
        return mailing_list
    form = await read_form(request)
    step_id = _form_int(form.get("step"))
    position = next((row.position for row in reports.welcome_series(session, mailing_list.id)
                     if row.step.id == step_id), 0)
    if not position:
        return list_view(request, user, session, mailing_list, flash="No such welcome email (removed already?).",
                          flash_kind="error", status_code=404)
    sends.remove_welcome_step(session, mailing_list.id, position)
    session.commit()
    return redirect(f"/admin/lists/{slug}#welcome", f"Welcome email {position} removed")
