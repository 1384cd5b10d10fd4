"""Pages for subscribers: subscribe, confirm, unsubscribe (and RFC 8058 one-click), preferences.

Rules that shape this file:
- A GET never changes state: mail scanners fetch every link, so links open a page whose button POSTs.
- The subscribe answer is identical whether the address is new, pending, confirmed or suppressed (no enumeration).
- The unsubscribe POST is also the RFC 8058 one-click target, so it needs no cookie and no CSRF token: the signed
  token in the URL is the capability (only the recipient has it), and it answers 200 with no redirect.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from mailer.settings import get_settings
from newsletter.web import intake, oneclick, pagecache, signup
from newsletter.web.csrf import verify_csrf
from newsletter.web.deps import db_session, form_data
from newsletter.web.forms import read_form
from newsletter.web.signup import Result, captcha_widget
from newsletter.web.templating import gettext_for, message_page, render_page
from subscribers import fields, mailing_lists, privacy, service
from subscribers.models import (
    ConsentSource,
    ListField,
    MailingList,
    Subscriber,
    Subscription,
    SubscriptionStatus,
)
from subscribers.service import Confirmation, Confirmed, NotSubscribed
from subscribers.tokens import Purpose, TokenError, link, read_token
from worker.campaigns import await_handover

router = APIRouter()


_client = signup.client_of


def _message(request: Request, heading: str, *paragraphs: str, status_code: int = 200,
             action_url: str | None = None, action_label: str = "",
             mailing_list: MailingList | None = None) -> HTMLResponse:
    """A one-message page. Callers pass text already translated (gettext_for(mailing_list))."""
    return message_page(request, heading, paragraphs, action_url=action_url, action_label=action_label,
                        status_code=status_code, mailing_list=mailing_list)


def _token_problem(request: Request, exc: TokenError, mailing_list: MailingList | None = None) -> HTMLResponse:
    """Tampered and expired links get a page that says so and offers the way forward (to sign up to
    `mailing_list` again: the list an expired link names)."""
    action_url = f"/lists/{mailing_list.slug}/subscribe" if mailing_list else None
    _ = gettext_for(mailing_list)
    if exc.expired:
        return _message(request, _("This link has expired"),
                        _("For your security, links in our emails stop working after a while."),
                        _("Sign up again and we'll email you a fresh link."),
                        status_code=410, action_url=action_url, action_label=_("Get a fresh link"),
                        mailing_list=mailing_list)
    return _message(request, _("This link is not valid"),
                    _("It may have been cut short or changed. Open the link straight from the email, "
                      "or sign up again to get a new one."), status_code=400, action_url=action_url,
                    action_label=_("Sign up again"), mailing_list=mailing_list)


def _no_such_list(request: Request) -> HTMLResponse:
    _ = gettext_for(None)
    return _message(request, _("No such list"), _("Check the address of this page."), status_code=404)


def _list_or_404(session: Session, slug: str) -> MailingList | None:
    if not mailing_lists.plausible_slug(slug):
        return None
    return session.scalar(select(MailingList).where(MailingList.slug == slug.lower()))


# Brand --------------------------------------------------------------------------------------------------------

@router.get("/lists/{slug}/logo")
def logo(slug: str, session: Session = db_session) -> Response:
    """A list's uploaded logo, for its emails and pages. The URL carries the image's digest, so it is cached for
    good; nosniff and a sandboxing CSP keep the bytes an image whatever they contain (the upload was checked to
    be PNG, JPEG or GIF)."""
    mailing_list = _list_or_404(session, slug)
    if mailing_list is None or not mailing_list.logo_type or mailing_list.logo_image is None:
        return Response("No logo.", status_code=404, media_type="text/plain")
    return Response(mailing_list.logo_image, media_type=mailing_list.logo_type, headers={
        "Cache-Control": "public, max-age=31536000, immutable", "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox"})


# Subscribe ----------------------------------------------------------------------------------------------------

@router.get("/lists/{slug}/subscribe", response_class=HTMLResponse)
async def subscribe_form(request: Request, slug: str) -> HTMLResponse:
    """Async, with the list from the page cache: under a crowd most requests never leave the event loop."""
    mailing_list = await pagecache.list_by_slug(slug)
    if mailing_list is None:
        return _no_such_list(request)
    return render_page(request, "public/subscribe.html", {"mailing_list": mailing_list,
                                                          "captcha": captcha_widget(get_settings())},
                       mailing_list=mailing_list)


def signup_answer(request: Request, mailing_list: MailingList, result: signup.Attempt, *, email: str = "",
                  name: str = "") -> HTMLResponse:
    """The page a person sees after any sign-up form, hosted or embedded, in the list's language: never a bare
    error."""
    _ = gettext_for(mailing_list)
    hosted = f"/lists/{mailing_list.slug}/subscribe"
    names = {"list": mailing_list.name}
    match result.result:
        case Result.ACCEPTED:
            return _message(request, _("Check your inbox"),
                            _("If %(list)s can send to that address, an email is on its way. "
                              "Open it and press the button to confirm.") % names,
                            _("Nothing arrived after a few minutes? Look in your spam folder."),
                            mailing_list=mailing_list)
        case Result.SUBSCRIBED:
            return _message(request, _("You're subscribed"), _("Welcome to %(list)s.") % names,
                            mailing_list=mailing_list)
        case Result.INVALID_EMAIL:
            return render_page(request, "public/subscribe.html",
                               {"mailing_list": mailing_list,
                                "error": _("That does not look like an email address we can deliver to: "
                                           "%(reason)s") % {"reason": result.message},
                                "email": email, "name": name, "captcha": captcha_widget(get_settings())},
                               status_code=400, mailing_list=mailing_list)
        case Result.RATE_LIMITED:
            return _message(request, _("Too many attempts"), _("Please wait a while before trying again."),
                            status_code=429, mailing_list=mailing_list)
        case Result.CAPTCHA_FAILED:
            return _message(request, _("Please try again"),
                            _("We could not check that a person sent this form. Sign up on our page instead."),
                            status_code=400, action_url=hosted, action_label=_("Sign up to %(list)s") % names,
                            mailing_list=mailing_list)
    # NOT_EMBEDDABLE, ORIGIN_REFUSED: the form sits on a page that may not sign people up to this list.
    return _message(request, _("Sign up to %(list)s here") % names,
                    _("This sign-up form cannot be used from the page you were on. Our own page works."),
                    status_code=403, action_url=hosted, action_label=_("Sign up to %(list)s") % names,
                    mailing_list=mailing_list)


@router.post("/lists/{slug}/subscribe", response_class=HTMLResponse, dependencies=[Depends(verify_csrf)])
async def subscribe(request: Request, slug: str) -> HTMLResponse:
    """Async, with the list from the page cache and the write grouped with concurrent ones (intake.py): a crowd's
    requests never wait for a thread or a pooled connection of their own."""
    mailing_list = await pagecache.list_by_slug(slug)
    if mailing_list is None:
        return _no_such_list(request)
    form = await read_form(request)
    email, name = str(form.get("email", "")), str(form.get("name", ""))
    widget = captcha_widget(get_settings())
    result = await signup.attempt(request, mailing_list, email=email, name=name,
                                  honeypot=str(form.get(signup.HONEYPOT, "")),
                                  captcha_token=str(form.get(widget["field"], "")) if widget else None,
                                  embedded=False)
    return signup_answer(request, mailing_list, result, email=email, name=name)


# Confirm ------------------------------------------------------------------------------------------------------

def _confirm_target(session: Session, token: str) -> tuple[Subscriber, MailingList]:
    data = read_token(Purpose.CONFIRM, token)
    subscriber = session.get(Subscriber, data.subscriber_id)
    mailing_list = session.get(MailingList, data.list_id) if data.list_id else None
    if subscriber is None or mailing_list is None or subscriber.erased_at is not None:
        raise TokenError("This link is not valid.")
    return subscriber, mailing_list


@router.get("/confirm/{token}", response_class=HTMLResponse)
def confirm_page(request: Request, token: str, session: Session = db_session) -> HTMLResponse:
    try:
        subscriber, mailing_list = _confirm_target(session, token)
    except TokenError as exc:
        return _token_problem(request, exc, session.get(MailingList, exc.list_id) if exc.expired and exc.list_id
                              else None)
    subscription = session.scalar(select(Subscription).where(Subscription.subscriber_id == subscriber.id,
                                                             Subscription.list_id == mailing_list.id))
    _ = gettext_for(mailing_list)
    if subscription is not None and subscription.status is SubscriptionStatus.CONFIRMED:
        return _message(request, _("You're already subscribed"), _("%(list)s is on its way to %(email)s.") % {
            "list": mailing_list.name, "email": subscriber.email}, mailing_list=mailing_list)
    return render_page(request, "public/confirm.html", {"mailing_list": mailing_list, "email": subscriber.email},
                       mailing_list=mailing_list)


@router.post("/confirm/{token}", response_class=HTMLResponse, dependencies=[Depends(verify_csrf)])
async def confirm(request: Request, token: str) -> HTMLResponse:
    """Async, the write grouped with concurrent confirmations (intake.py), the list from the page cache."""
    try:
        data = read_token(Purpose.CONFIRM, token)
        if not data.list_id:
            raise TokenError("This link is not valid.")
    except TokenError as exc:
        return _token_problem(request, exc, await pagecache.list_by_id(exc.list_id) if exc.expired and exc.list_id
                              else None)
    ip, user_agent = _client(request)
    result = await intake.CONFIRMATIONS.submit(Confirmation(data.subscriber_id, data.list_id, ip, user_agent))
    mailing_list = await pagecache.list_by_id(data.list_id)
    if result.state is Confirmed.NOBODY or mailing_list is None:
        return _token_problem(request, TokenError("This link is not valid."))
    _ = gettext_for(mailing_list)
    if result.state is Confirmed.GONE:
        return _message(request, _("Nothing to confirm"),
                        _("This subscription no longer exists. Sign up again if you still want it."),
                        status_code=410, mailing_list=mailing_list)
    if result.state is Confirmed.REFUSED:
        return _message(request, _("We can't send to this address"),
                        _("Mail to this address was refused before, so we don't send to it. Contact us if that's "
                          "a mistake."), mailing_list=mailing_list)
    return _message(request, _("You're subscribed"), _("Thanks for confirming. %(list)s will arrive at %(email)s.")
                    % {"list": mailing_list.name, "email": result.email}, mailing_list=mailing_list)


# Unsubscribe (page + RFC 8058 one-click) ----------------------------------------------------------------------

@router.get("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe_page(request: Request, token: str, session: Session = db_session) -> HTMLResponse:
    try:
        data = read_token(Purpose.UNSUBSCRIBE, token)
    except TokenError as exc:
        return _token_problem(request, exc)
    subscriber = session.get(Subscriber, data.subscriber_id)
    mailing_list = session.get(MailingList, data.list_id) if data.list_id else None
    if subscriber is None or subscriber.erased_at is not None:
        _ = gettext_for(mailing_list)
        return _message(request, _("You're unsubscribed"), _("We hold no subscription for this link any more."),
                        mailing_list=mailing_list)
    return render_page(request, "public/unsubscribe.html", {
        "mailing_list": mailing_list, "email": subscriber.email,
        "preferences_url": link(Purpose.PREFERENCES, subscriber.id)}, mailing_list=mailing_list)


@router.post("/unsubscribe/{token}")
async def unsubscribe(request: Request, token: str) -> Response:
    """Page button and RFC 8058 one-click alike: no cookie, no CSRF token, 200 without redirect, idempotent.

    Async, the write grouped with concurrent unsubscribes (intake.py): a mailbox provider replaying one-click
    unsubscribes, or a crowd leaving after an unpopular issue, costs a few statements per group."""
    form = await read_form(request)
    scope_all = form.get("scope") == "all"
    ip, user_agent = _client(request)
    if form.get("List-Unsubscribe") == "One-Click":  # urlencoded ones are answered by oneclick.OneClickFastPath
        status, text = await oneclick.one_click(token, ip, user_agent, scope_all=scope_all)
        return Response(text, status_code=status, media_type="text/plain")
    try:
        data = read_token(Purpose.UNSUBSCRIBE, token)
    except TokenError as exc:
        return _token_problem(request, exc)
    scope_all = scope_all or data.list_id is None
    # No read of the person first: unsubscribe_many skips a missing or erased one in its own statement.
    await intake.unsubscribe(data.subscriber_id, None if scope_all else data.list_id, method="page", ip=ip,
                             user_agent=user_agent)
    mailing_list = await pagecache.list_by_id(data.list_id) if data.list_id else None
    _ = gettext_for(mailing_list)
    gone = (_("You won't receive any of our lists any more.") if scope_all or mailing_list is None else
            _("You won't receive %(list)s any more.") % {"list": mailing_list.name})
    return _message(request, _("You're unsubscribed"), gone,
                    _("Changed your mind? You can subscribe again from your preferences."),
                    action_url=link(Purpose.PREFERENCES, data.subscriber_id), action_label=_("Preferences"),
                    mailing_list=mailing_list)


# Preferences --------------------------------------------------------------------------------------------------

def _preferences_page(request: Request, session: Session, subscriber: Subscriber, token: str,
                      notice: str = "", *, field_errors: dict[str, str] | None = None,
                      typed: dict[str, str] | None = None, status_code: int = 200) -> HTMLResponse:
    rows = session.execute(select(Subscription, MailingList).join(MailingList, MailingList.id == Subscription.list_id)
                           .where(Subscription.subscriber_id == subscriber.id).order_by(MailingList.name)).all()
    home = _home_list(session, subscriber)
    _ = gettext_for(home)
    typed, errors = typed or {}, field_errors or {}
    details = [{"field": field,
                "value": typed.get(field.name, fields.display(subscriber.attributes.get(field.name))),
                "error": _field_problem(_, field, typed.get(field.name, "")) if field.name in errors else ""}
               for field in _editable(session, subscriber)]
    return render_page(request, "public/preferences.html", {
        "email": subscriber.email, "name": subscriber.name, "notice": notice,
        "tracking": not subscriber.tracking_opt_out, "details": details, "max_value": fields.MAX_VALUE,
        "rows": [{"list": mailing_list, "status": sub.status.value} for sub, mailing_list in rows],
        "export_url": f"/preferences/{token}/export"}, status_code=status_code, mailing_list=home)


def _active_lists(session: Session, subscriber: Subscriber) -> list[int]:
    """The lists whose editable fields the person sees: those they are on or waiting to confirm."""
    return list(session.scalars(select(Subscription.list_id).where(
        Subscription.subscriber_id == subscriber.id, Subscription.status != SubscriptionStatus.UNSUBSCRIBED)
        .order_by(Subscription.created_at, Subscription.id)))


def _editable(session: Session, subscriber: Subscriber) -> list[ListField]:
    return fields.editable_fields(session, _active_lists(session, subscriber))


def _field_problem(_: Callable[[str], str], field: ListField, raw: str) -> str:
    """What to fix, in the page's language (the service's message is English, for staff)."""
    if len(raw.strip()) > fields.MAX_VALUE:
        return _("That is too long.")
    hints = {"number": _("Enter a number, such as 42 or 3.5."), "date": _("Enter a date as YYYY-MM-DD."),
             "yesno": _("Choose yes or no."), "oneof": _("Choose one of the options.")}
    return hints.get(field.type, _("That is too long."))


def _field_values(form: FormData) -> dict[str, str]:
    """`field.NAME` inputs as NAME -> text; a repeated name keeps its last value (a checkbox after its hidden
    "no")."""
    return {key.removeprefix("field."): str(form.getlist(key)[-1]) for key in form if key.startswith("field.")}


def _home_list(session: Session, subscriber: Subscriber) -> MailingList | None:
    """Whose language and brand a subscriber's own pages wear: their earliest subscription's list."""
    return session.scalar(select(MailingList).join(Subscription, Subscription.list_id == MailingList.id)
                          .where(Subscription.subscriber_id == subscriber.id)
                          .order_by(Subscription.created_at, Subscription.id).limit(1))


def _preferences_subscriber(session: Session, token: str) -> Subscriber:
    data = read_token(Purpose.PREFERENCES, token)
    subscriber = session.get(Subscriber, data.subscriber_id)
    if subscriber is None or subscriber.erased_at is not None:
        raise TokenError("This link is not valid.")
    return subscriber


@router.get("/preferences/{token}", response_class=HTMLResponse)
def preferences(request: Request, token: str, session: Session = db_session) -> HTMLResponse:
    try:
        subscriber = _preferences_subscriber(session, token)
    except TokenError as exc:
        return _token_problem(request, exc)
    return _preferences_page(request, session, subscriber, token)


@router.get("/preferences/{token}/export")
def export(request: Request, token: str, session: Session = db_session) -> Response:
    try:
        subscriber = _preferences_subscriber(session, token)
    except TokenError as exc:
        return _token_problem(request, exc)
    return JSONResponse(privacy.export_subscriber(session, subscriber.id),
                        headers={"Content-Disposition": 'attachment; filename="my-newsletter-data.json"',
                                 "Cache-Control": "no-store"})


@router.post("/preferences/{token}", response_class=HTMLResponse, dependencies=[Depends(verify_csrf)])
def update_preferences(request: Request, token: str, form: FormData = Depends(form_data),
                       session: Session = db_session) -> HTMLResponse:
    try:
        subscriber = _preferences_subscriber(session, token)
    except TokenError as exc:
        return _token_problem(request, exc)
    action = str(form.get("action", ""))
    _ = gettext_for(_home_list(session, subscriber))
    ip, user_agent = _client(request)
    list_id = int(str(form.get("list_id") or 0)) if str(form.get("list_id") or "0").isdigit() else 0
    notice = ""
    if action == "name":
        service.update_preferences(session, subscriber.id, name=str(form.get("name", "")), ip=ip,
                                   user_agent=user_agent)
        notice = _("Saved.")
    elif action == "fields":
        typed = _field_values(form)
        errors = fields.apply_values(session, subscriber, _active_lists(session, subscriber), typed,
                                     editable_only=True, source=ConsentSource.FORM, ip=ip, user_agent=user_agent)
        if errors:
            session.commit()  # the values that fit are kept
            return _preferences_page(request, session, subscriber, token, _("Some values were not saved."),
                                     field_errors=errors, typed=typed, status_code=400)
        notice = _("Saved.")
    elif action == "tracking":
        service.update_preferences(session, subscriber.id, tracking=form.get("tracking") == "on", ip=ip,
                                   user_agent=user_agent)
        notice = _("Saved.")
    elif action == "unsubscribe" and list_id:
        service.unsubscribe(session, subscriber.id, list_id, source=ConsentSource.FORM, ip=ip, user_agent=user_agent,
                            detail={"method": "preferences"})
        notice = _("Unsubscribed.")
    elif action == "resubscribe":
        try:
            outcome = service.resubscribe(session, subscriber.id, list_id, source=ConsentSource.FORM, ip=ip,
                                          user_agent=user_agent)
        except NotSubscribed:
            return _message(request, _("No such subscription"),
                            _("You can only subscribe again to a list you were on."), status_code=404)
        notice = _("We can't send to this address.") if outcome.refused else _("Subscribed again.")
    elif action == "erase":
        if form.get("confirm_erase") != "yes":
            return _preferences_page(request, session, subscriber, token, _("Tick the box to confirm erasure."))
        home = _home_list(session, subscriber)
        erased_id = subscriber.id
        privacy.erase(session, subscriber.id, source=ConsentSource.FORM)
        session.commit()
        await_handover(erased_id)
        return _message(request, _("Your data is erased"),
                        _("We deleted your address and everything we knew about you. We keep only a one-way "
                          "fingerprint of the address so that it is never added again by mistake."),
                        mailing_list=home)
    session.commit()
    if action == "unsubscribe":
        await_handover(subscriber.id)
    return _preferences_page(request, session, subscriber, token, notice)
