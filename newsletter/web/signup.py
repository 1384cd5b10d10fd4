"""One sign-up path for the hosted form, the form embedded on a publisher's site, and the JSON endpoint.

A form embedded on another site carries no cookie and no CSRF token, so it is defended the way sign-up forms on the
open web are: double opt-in (the confirmation link is the proof that the mailbox agreed), a honeypot field,
per-client and per-address rate limits, an optional per-list allow-list of origins and an optional CAPTCHA checked
server-side. A CSRF token would add nothing here: forging a sign-up only sends a confirmation request, which is what
anyone can do by typing the address into the form.

Whatever happened to the address (new, pending, confirmed, suppressed), a sign-up that passed the checks answers the
same, so the form cannot be used to learn who is subscribed.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from mailer.settings import Settings, get_settings
from newsletter.web import intake
from newsletter.web.intake import SignUpRequest
from newsletter.web.ratelimit import limiter
from subscribers import service
from subscribers.intake import SignUp
from subscribers.models import MailingList
from subscribers.service import InvalidEmail

# The form fields each CAPTCHA widget adds to the form it sits in.
CAPTCHA_FIELDS = {"turnstile": "cf-turnstile-response", "hcaptcha": "h-captcha-response"}
HONEYPOT = "website"


class Result(StrEnum):
    ACCEPTED = "accepted"          # a confirmation is on its way (or nothing to do): the same answer for everyone
    SUBSCRIBED = "subscribed"      # single opt-in list: subscribed at once
    INVALID_EMAIL = "invalid_email"
    RATE_LIMITED = "rate_limited"
    CAPTCHA_FAILED = "captcha_failed"
    ORIGIN_REFUSED = "origin_refused"
    NOT_EMBEDDABLE = "not_embeddable"


@dataclass
class Attempt:
    result: Result
    message: str = ""


def client_of(request: Request) -> tuple[str | None, str | None]:
    return (request.client.host if request.client else None), request.headers.get("user-agent")


def request_origin(request: Request) -> str | None:
    """Where the form was posted from: the Origin header, else the origin of the Referer (older browsers, some
    privacy settings). None when the browser sent neither, or Origin is the opaque "null"."""
    origin = request.headers.get("origin")
    if origin and origin != "null":
        return origin.rstrip("/").lower()
    referer = request.headers.get("referer")
    if referer:
        parts = urlsplit(referer)
        if parts.scheme and parts.netloc:
            return f"{parts.scheme}://{parts.netloc}".lower()
    return None


def origin_allowed(mailing_list: MailingList, origin: str | None) -> bool:
    """An empty allow-list lets any page embed the form; otherwise the page must be on one of the listed origins
    (a request with neither Origin nor Referer is refused then, since it cannot show where it came from)."""
    allowed = mailing_list.allowed_origins
    return not allowed or (origin is not None and origin in allowed)


def verify_captcha(settings: Settings, token: str, ip: str | None) -> bool:
    """The provider's siteverify call (Turnstile and hCaptcha share its shape). Fails closed: a provider that is
    down or slow means the sign-up is refused with a page that says to try again, never let through unchecked."""
    if not token or len(token) > 4096 or settings.captcha_secret is None or not settings.captcha_verify_url:
        return False
    fields = {"secret": settings.captcha_secret.get_secret_value(), "response": token}
    if ip:
        fields["remoteip"] = ip
    # The URL is an http(s) one: the settings refuse any other scheme.
    request = urllib.request.Request(settings.captcha_verify_url, data=urllib.parse.urlencode(fields).encode(),  # noqa: S310
                                     headers={"Content-Type": "application/x-www-form-urlencoded"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=settings.captcha_timeout_s) as response:  # noqa: S310
            answer = json.loads(response.read(65536))
    except (OSError, ValueError, urllib.error.URLError):
        return False
    return isinstance(answer, dict) and answer.get("success") is True


async def attempt(request: Request, mailing_list: MailingList, *, email: str, name: str, honeypot: str,
                  captcha_token: str | None, embedded: bool) -> Attempt:
    """Every check, then the subscription itself, committed (with the concurrent sign-ups of this process, see
    newsletter/web/intake.py) before it returns. `mailing_list` may be detached (the page cache's)."""
    settings = get_settings()
    ip, user_agent = client_of(request)
    if embedded:
        if not mailing_list.embeddable:
            return Attempt(Result.NOT_EMBEDDABLE)
        if not origin_allowed(mailing_list, request_origin(request)):
            return Attempt(Result.ORIGIN_REFUSED)
    if honeypot.strip():  # only bots fill a field nobody can see; they get the answer a person gets
        return Attempt(Result.ACCEPTED)
    per_ip = (f"sub:ip:{ip}", settings.subscribe_rate_per_ip)
    window = settings.subscribe_rate_window_s
    # Every post counts against its client, then (once the address is valid, and the client within its limit)
    # against the address. With a CAPTCHA the client is counted before the provider is asked, so nobody can make
    # us call it without limit; without one, both are counted in one round trip once the address is known.
    if settings.captcha_provider:
        if not await run_in_threadpool(limiter().hit, *per_ip, window):
            return Attempt(Result.RATE_LIMITED)
        if not await run_in_threadpool(verify_captcha, settings, captcha_token or "", ip):
            return Attempt(Result.CAPTCHA_FAILED)
    counted_first = (per_ip,) if not settings.captcha_provider else ()
    try:
        address = service.normalise_email(email)
        service.check_local_part(address, mailing_list.allow_international)
    except InvalidEmail as exc:
        if counted_first and not (await intake.SIGNUPS.submit(SignUpRequest(counted_first, None))
                                  ).within_limits:
            return Attempt(Result.RATE_LIMITED)
        return Attempt(Result.INVALID_EMAIL, str(exc))
    source_detail = (request_origin(request) or "")[:200] if embedded else None
    signup = SignUp(mailing_list, address, name, ip, user_agent,
                    consent_note=f"embedded form on {source_detail}" if source_detail else "")
    per_address = (f"sub:addr:{address}", settings.subscribe_rate_per_email)
    answer = await intake.SIGNUPS.submit(SignUpRequest((*counted_first, per_address), signup))
    if not answer.within_limits:
        return Attempt(Result.RATE_LIMITED)
    return Attempt(Result.ACCEPTED if mailing_list.double_opt_in else Result.SUBSCRIBED)


def captcha_widget(settings: Settings) -> dict[str, str] | None:
    """What a form needs to show the configured CAPTCHA: the provider's script, the widget's class, the site key."""
    if settings.captcha_provider == "turnstile":
        return {"script": "https://challenges.cloudflare.com/turnstile/v0/api.js", "class": "cf-turnstile",
                "site_key": settings.captcha_site_key or "", "field": CAPTCHA_FIELDS["turnstile"]}
    if settings.captcha_provider == "hcaptcha":
        return {"script": "https://js.hcaptcha.com/1/api.js", "class": "h-captcha",
                "site_key": settings.captcha_site_key or "", "field": CAPTCHA_FIELDS["hcaptcha"]}
    return None
