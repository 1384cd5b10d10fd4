"""Pages for subscribers: subscribe, confirm, unsubscribe (and RFC 8058 one-click), preferences.

Rules that shape this file:
- A GET never changes state: mail scanners fetch every link, so links open a page whose button POSTs.
- The subscribe answer is identical whether the address is new, pending, confirmed or suppressed (no enumeration).
- The unsubscribe POST is also the RFC 8058 one-click target, so it needs no cookie and no CSRF token: the signed
  token in the URL is the capability (only the recipient has it), and it answers 200 with no redirect.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from mailer.settings import get_settings
from newsletter.web import signup
from newsletter.web.csrf import verify_csrf
from newsletter.web.deps import db_session, form_data
from newsletter.web.signup import Result, captcha_widget
from newsletter.web.templating import render_page
from subscribers import service
from subscribers.models import ConsentSource, MailingList, Subscriber, Subscription, SubscriptionStatus
from subscribers.service import NotSubscribed, ServiceError
from subscribers.tokens import Purpose, TokenError, link, read_token
from worker.notifications import notify_after_commit

router = APIRouter()


_client = signup.client_of


def _message(request: Request, heading: str, *paragraphs: str, status_code: int = 200,
             action_url: str | None = None, action_label: str = "") -> HTMLResponse:
    return render_page(request, "public/message.html", {"heading": heading, "paragraphs": paragraphs,
                                                        "action_url": action_url, "action_label": action_label},
                       status_code=status_code)


def _token_problem(request: Request, exc: TokenError, session: Session, list_id: int | None = None) -> HTMLResponse:
    """Tampered and expired links get a page that says so and offers the way forward."""
    action_url = None
    if list_id is not None:
        mailing_list = session.get(MailingList, list_id)
        action_url = f"/lists/{mailing_list.slug}/subscribe" if mailing_list else None
    if exc.expired:
        return _message(request, "This link has expired",
                        "For your security, links in our emails stop working after a while.",
                        "Sign up again and we'll email you a fresh link.",
                        status_code=410, action_url=action_url, action_label="Get a fresh link")
    return _message(request, "This link is not valid",
                    "It may have been cut short or changed. Open the link straight from the email, "
                    "or sign up again to get a new one.", status_code=400, action_url=action_url,
                    action_label="Sign up again")


def _list_or_404(session: Session, slug: str) -> MailingList | None:
    return session.scalar(select(MailingList).where(MailingList.slug == slug.lower()))


# Subscribe ----------------------------------------------------------------------------------------------------

@router.get("/lists/{slug}/subscribe", response_class=HTMLResponse)
def subscribe_form(request: Request, slug: str, session: Session = db_session) -> HTMLResponse:
    mailing_list = _list_or_404(session, slug)
    if mailing_list is None:
        return _message(request, "No such list", "Check the address of this page.", status_code=404)
    return render_page(request, "public/subscribe.html", {"mailing_list": mailing_list,
                                                          "captcha": captcha_widget(get_settings())})


def signup_answer(request: Request, mailing_list: MailingList, result: signup.Attempt, *, email: str = "",
                  name: str = "") -> HTMLResponse:
    """The page a person sees after any sign-up form, hosted or embedded: never a bare error."""
    hosted = f"/lists/{mailing_list.slug}/subscribe"
    match result.result:
        case Result.ACCEPTED:
            return _message(request, "Check your inbox",
                            f"If {mailing_list.name} can send to that address, an email is on its way. "
                            "Open it and press the button to confirm.",
                            "Nothing arrived after a few minutes? Look in your spam folder.")
        case Result.SUBSCRIBED:
            return _message(request, "You're subscribed", f"Welcome to {mailing_list.name}.")
        case Result.INVALID_EMAIL:
            return render_page(request, "public/subscribe.html",
                               {"mailing_list": mailing_list, "error": result.message, "email": email, "name": name,
                                "captcha": captcha_widget(get_settings())}, status_code=400)
        case Result.RATE_LIMITED:
            return _message(request, "Too many attempts", "Please wait a while before trying again.",
                            status_code=429)
        case Result.CAPTCHA_FAILED:
            return _message(request, "Please try again",
                            "We could not check that a person sent this form. Sign up on our page instead.",
                            status_code=400, action_url=hosted, action_label=f"Sign up to {mailing_list.name}")
    # NOT_EMBEDDABLE, ORIGIN_REFUSED: the form sits on a page that may not sign people up to this list.
    return _message(request, f"Sign up to {mailing_list.name} here",
                    "This sign-up form cannot be used from the page you were on. Our own page works.",
                    status_code=403, action_url=hosted, action_label=f"Sign up to {mailing_list.name}")


@router.post("/lists/{slug}/subscribe", response_class=HTMLResponse, dependencies=[Depends(verify_csrf)])
def subscribe(request: Request, slug: str, form: FormData = Depends(form_data),
              session: Session = db_session) -> HTMLResponse:
    mailing_list = _list_or_404(session, slug)
    if mailing_list is None:
        return _message(request, "No such list", "Check the address of this page.", status_code=404)
    email, name = str(form.get("email", "")), str(form.get("name", ""))
    widget = captcha_widget(get_settings())
    result = signup.attempt(session, request, mailing_list, email=email, name=name,
                            honeypot=str(form.get(signup.HONEYPOT, "")),
                            captcha_token=str(form.get(widget["field"], "")) if widget else None, embedded=False)
    session.commit()
    return signup_answer(request, mailing_list, result, email=email, name=name)


# Confirm ------------------------------------------------------------------------------------------------------

def _confirm_target(session: Session, token: str) -> tuple[Subscriber, MailingList, Subscription | None]:
    data = read_token(Purpose.CONFIRM, token)
    subscriber = session.get(Subscriber, data.subscriber_id)
    mailing_list = session.get(MailingList, data.list_id) if data.list_id else None
    if subscriber is None or mailing_list is None or subscriber.erased_at is not None:
        raise TokenError("This link is not valid.")
    subscription = session.scalar(select(Subscription).where(Subscription.subscriber_id == subscriber.id,
                                                             Subscription.list_id == mailing_list.id))
    return subscriber, mailing_list, subscription


@router.get("/confirm/{token}", response_class=HTMLResponse)
def confirm_page(request: Request, token: str, session: Session = db_session) -> HTMLResponse:
    try:
        subscriber, mailing_list, subscription = _confirm_target(session, token)
    except TokenError as exc:
        return _token_problem(request, exc, session, exc.list_id if exc.expired else None)
    if subscription is not None and subscription.status is SubscriptionStatus.CONFIRMED:
        return _message(request, "You're already subscribed", f"{mailing_list.name} is on its way to "
                                                               f"{subscriber.email}.")
    return render_page(request, "public/confirm.html", {"mailing_list": mailing_list, "email": subscriber.email})


@router.post("/confirm/{token}", response_class=HTMLResponse, dependencies=[Depends(verify_csrf)])
def confirm(request: Request, token: str, session: Session = db_session) -> HTMLResponse:
    try:
        subscriber, mailing_list, _subscription = _confirm_target(session, token)
        ip, user_agent = _client(request)
        outcome = service.confirm(session, subscriber.id, mailing_list.id, ip=ip, user_agent=user_agent)
    except TokenError as exc:
        return _token_problem(request, exc, session, exc.list_id if exc.expired else None)
    except ServiceError as exc:
        return _message(request, "Nothing to confirm", str(exc), status_code=410)
    notify_after_commit(session, outcome.notify)
    session.commit()
    if outcome.refused:
        return _message(request, "We can't send to this address",
                        "Mail to this address was refused before, so we don't send to it. Contact us if that's "
                        "a mistake.")
    return _message(request, "You're subscribed", f"Thanks for confirming. {mailing_list.name} will arrive at "
                                                   f"{subscriber.email}.")


# Unsubscribe (page + RFC 8058 one-click) ----------------------------------------------------------------------

@router.get("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe_page(request: Request, token: str, session: Session = db_session) -> HTMLResponse:
    try:
        data = read_token(Purpose.UNSUBSCRIBE, token)
    except TokenError as exc:
        return _token_problem(request, exc, session)
    subscriber = session.get(Subscriber, data.subscriber_id)
    if subscriber is None or subscriber.erased_at is not None:
        return _message(request, "You're unsubscribed", "We hold no subscription for this link any more.")
    mailing_list = session.get(MailingList, data.list_id) if data.list_id else None
    return render_page(request, "public/unsubscribe.html", {
        "mailing_list": mailing_list, "email": subscriber.email,
        "preferences_url": link(Purpose.PREFERENCES, subscriber.id)})


@router.post("/unsubscribe/{token}")
def unsubscribe(request: Request, token: str, form: FormData = Depends(form_data),
                session: Session = db_session) -> Response:
    """Page button and RFC 8058 one-click alike: no cookie, no CSRF token, 200 without redirect, idempotent."""
    one_click = form.get("List-Unsubscribe") == "One-Click"
    try:
        data = read_token(Purpose.UNSUBSCRIBE, token)
    except TokenError as exc:
        if one_click:
            return Response(str(exc), status_code=410 if exc.expired else 400, media_type="text/plain")
        return _token_problem(request, exc, session)
    scope_all = form.get("scope") == "all" or data.list_id is None
    ip, user_agent = _client(request)
    subscriber = session.get(Subscriber, data.subscriber_id)
    if subscriber is not None and subscriber.erased_at is None:
        service.unsubscribe(session, subscriber.id, None if scope_all else data.list_id,
                            source=ConsentSource.FORM, ip=ip, user_agent=user_agent,
                            detail={"method": "one-click" if one_click else "page", "scope": "all" if scope_all
                                    else "list"})
        session.commit()
    if one_click:
        return Response("Unsubscribed.", status_code=200, media_type="text/plain")
    mailing_list = session.get(MailingList, data.list_id) if data.list_id else None
    what = "any of our lists" if scope_all or mailing_list is None else mailing_list.name
    return _message(request, "You're unsubscribed", f"You won't receive {what} any more.",
                    "Changed your mind? You can subscribe again from your preferences.",
                    action_url=link(Purpose.PREFERENCES, data.subscriber_id), action_label="Preferences")


# Preferences --------------------------------------------------------------------------------------------------

def _preferences_page(request: Request, session: Session, subscriber: Subscriber, token: str,
                      notice: str = "") -> HTMLResponse:
    rows = session.execute(select(Subscription, MailingList).join(MailingList)
                           .where(Subscription.subscriber_id == subscriber.id).order_by(MailingList.name)).all()
    return render_page(request, "public/preferences.html", {
        "email": subscriber.email, "name": subscriber.name, "notice": notice,
        "tracking": not subscriber.tracking_opt_out,
        "rows": [{"list": mailing_list, "status": sub.status.value} for sub, mailing_list in rows],
        "export_url": f"/preferences/{token}/export"})


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
        return _token_problem(request, exc, session)
    return _preferences_page(request, session, subscriber, token)


@router.get("/preferences/{token}/export")
def export(request: Request, token: str, session: Session = db_session) -> Response:
    try:
        subscriber = _preferences_subscriber(session, token)
    except TokenError as exc:
        return _token_problem(request, exc, session)
    return JSONResponse(service.export_subscriber(session, subscriber.id),
                        headers={"Content-Disposition": 'attachment; filename="my-newsletter-data.json"',
                                 "Cache-Control": "no-store"})


@router.post("/preferences/{token}", response_class=HTMLResponse, dependencies=[Depends(verify_csrf)])
def update_preferences(request: Request, token: str, form: FormData = Depends(form_data),
                       session: Session = db_session) -> HTMLResponse:
    try:
        subscriber = _preferences_subscriber(session, token)
    except TokenError as exc:
        return _token_problem(request, exc, session)
    action = str(form.get("action", ""))
    ip, user_agent = _client(request)
    list_id = int(str(form.get("list_id") or 0)) if str(form.get("list_id") or "0").isdigit() else 0
    notice = ""
    if action == "name":
        service.update_preferences(session, subscriber.id, name=str(form.get("name", "")), ip=ip,
                                   user_agent=user_agent)
        notice = "Saved."
    elif action == "tracking":
        service.update_preferences(session, subscriber.id, tracking=form.get("tracking") == "on", ip=ip,
                                   user_agent=user_agent)
        notice = "Saved."
    elif action == "unsubscribe" and list_id:
        service.unsubscribe(session, subscriber.id, list_id, source=ConsentSource.FORM, ip=ip, user_agent=user_agent,
                            detail={"method": "preferences"})
        notice = "Unsubscribed."
    elif action == "resubscribe":
        try:
            outcome = service.resubscribe(session, subscriber.id, list_id, source=ConsentSource.FORM, ip=ip,
                                          user_agent=user_agent)
        except NotSubscribed:
            return _message(request, "No such subscription", "You can only subscribe again to a list you were on.",
                            status_code=404)
        notice = "We can't send to this address." if outcome.refused else "Subscribed again."
    elif action == "erase":
        if form.get("confirm_erase") != "yes":
            return _preferences_page(request, session, subscriber, token, "Tick the box to confirm erasure.")
        service.erase(session, subscriber.id, source=ConsentSource.FORM)
        session.commit()
        return _message(request, "Your data is erased",
                        "We deleted your address and everything we knew about you. We keep only a one-way "
                        "fingerprint of the address so that it is never added again by mistake.")
    session.commit()
    return _preferences_page(request, session, subscriber, token, notice)
