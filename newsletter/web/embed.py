"""Sign-up forms embedded on the publisher's own site: a plain HTML form, and a JSON endpoint for JavaScript forms.

The hosted form at /lists/{slug}/subscribe keeps its CSRF token; these two routes take posts from other origins, with
no cookie and no token (a CSRF cookie is SameSite=Lax, so a browser never sends it cross-site). How they are defended
instead is in newsletter.web.signup. The JSON endpoint lives in the API app so it is in the OpenAPI document; CORS
there is per list (its allowed origins), so it is answered here rather than by a blanket middleware.
"""

from __future__ import annotations

import json
from html import escape

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer.settings import get_settings
from newsletter.web import pagecache, signup
from newsletter.web.deps import db_session
from newsletter.web.forms import read_form
from newsletter.web.public import signup_answer
from newsletter.web.signup import Result, captcha_widget
from newsletter.web.templating import render_page
from subscribers.models import MailingList

router = APIRouter(include_in_schema=False)
json_router = APIRouter(tags=["sign-up from other sites"])


def _embeddable_list(session: Session, slug: str) -> MailingList | None:
    return session.scalar(select(MailingList).where(MailingList.slug == slug.lower()))


@router.post("/lists/{slug}/embed", response_class=HTMLResponse)
async def embedded_signup(request: Request, slug: str) -> Response:
    """The target of the plain HTML snippet: answers with our own page, or the list's thank-you page. Async, as
    the hosted form (public.subscribe)."""
    mailing_list = await pagecache.list_by_slug(slug)
    if mailing_list is None:
        return render_page(request, "public/message.html", {"heading": "No such list", "paragraphs": [
            "The form you used points at a list that does not exist (any more)."]}, status_code=404)
    form = await read_form(request)
    email, name = str(form.get("email", "")), str(form.get("name", ""))
    widget = captcha_widget(get_settings())
    result = await signup.attempt(request, mailing_list, email=email, name=name,
                                  honeypot=str(form.get(signup.HONEYPOT, "")),
                                  captcha_token=str(form.get(widget["field"], "")) if widget else None,
                                  embedded=True)
    if result.result in (Result.ACCEPTED, Result.SUBSCRIBED) and mailing_list.thank_you_url:
        return RedirectResponse(mailing_list.thank_you_url, status_code=303)
    return signup_answer(request, mailing_list, result, email=email, name=name)


# JSON for JavaScript forms ------------------------------------------------------------------------------------

class SignupIn(BaseModel):
    email: str = Field(max_length=320)
    name: str = Field(default="", max_length=200)
    website: str = Field(default="", max_length=500, description="The honeypot: leave it empty (bots fill it).")
    captcha_token: str | None = Field(default=None, max_length=4096,
                                      description="The CAPTCHA widget's response, when a provider is configured.")


class SignupOut(BaseModel):
    status: Result
    message: str


MESSAGES = {
    Result.ACCEPTED: "Check your inbox: if we can send to that address, an email is on its way. "
                     "Open it and press the button to confirm.",
    Result.SUBSCRIBED: "You're subscribed.",
    Result.RATE_LIMITED: "Too many attempts. Please wait a while before trying again.",
    Result.CAPTCHA_FAILED: "We could not check that a person sent this form. Please try again.",
    Result.ORIGIN_REFUSED: "This form cannot sign people up from this site.",
    Result.NOT_EMBEDDABLE: "This list takes sign-ups on its own page only.",
}
STATUS = {Result.ACCEPTED: 200, Result.SUBSCRIBED: 200, Result.INVALID_EMAIL: 400, Result.RATE_LIMITED: 429,
          Result.CAPTCHA_FAILED: 400, Result.ORIGIN_REFUSED: 403, Result.NOT_EMBEDDABLE: 403}


def _cors(request: Request, mailing_list: MailingList | None) -> dict[str, str]:
    """CORS headers for the page's origin when it may embed this list; none otherwise (the browser then hides the
    answer from the page's script). No credentials: the endpoint needs no cookie."""
    origin = request.headers.get("origin")
    headers = {"Vary": "Origin"}
    if (origin and mailing_list is not None and mailing_list.embeddable
            and signup.origin_allowed(mailing_list, signup.request_origin(request))):
        headers.update({"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Methods": "POST, OPTIONS",
                        "Access-Control-Allow-Headers": "Content-Type", "Access-Control-Max-Age": "600"})
    return headers


@json_router.options("/public/lists/{slug}/subscribe", include_in_schema=False)
def signup_preflight(request: Request, slug: str, session: Session = db_session) -> Response:
    return Response(status_code=204, headers=_cors(request, _embeddable_list(session, slug)))


@json_router.post("/public/lists/{slug}/subscribe", response_model=SignupOut,
                  responses={429: {"model": SignupOut}})
async def json_signup(request: Request, slug: str, body: SignupIn) -> JSONResponse:
    """Sign up from a JavaScript form on the publisher's site (CORS for the list's allowed origins; no token).

    Double opt-in lists answer `accepted` whatever the address's state, so the answer reveals nobody's subscription.
    """
    mailing_list = await pagecache.list_by_slug(slug)
    if mailing_list is None:
        return JSONResponse({"error": "No such list."}, status_code=404, headers=_cors(request, None))
    result = await signup.attempt(request, mailing_list, email=body.email, name=body.name, honeypot=body.website,
                                  captcha_token=body.captcha_token, embedded=True)
    headers = _cors(request, mailing_list)
    if result.result is Result.INVALID_EMAIL:
        return JSONResponse({"error": result.message, "status": result.result.value}, status_code=400,
                            headers=headers)
    answer = SignupOut(status=result.result, message=MESSAGES[result.result])
    if STATUS[result.result] >= 400:
        return JSONResponse({"error": answer.message, "status": answer.status.value},
                            status_code=STATUS[result.result], headers=headers)
    return JSONResponse(answer.model_dump(mode="json"), headers=headers)


# Snippets the admin offers ------------------------------------------------------------------------------------

def snippets(mailing_list: MailingList) -> dict[str, str]:
    """Copy-paste HTML for the publisher's site: a plain form (works without JavaScript) and a JavaScript variant
    that stays on the page. Both carry the honeypot and, when configured, the CAPTCHA widget."""
    settings = get_settings()
    base = settings.base_url.rstrip("/")
    slug = mailing_list.slug
    name = escape(mailing_list.name)
    widget = captcha_widget(settings)
    captcha = (f'  <div class="{widget["class"]}" data-sitekey="{escape(widget["site_key"])}"></div>\n'
               f'  <script src="{widget["script"]}" async defer></script>\n') if widget else ""
    fields = ('  <label>Email <input type="email" name="email" required autocomplete="email"></label>\n'
              '  <label>Name <input type="text" name="name" autocomplete="name"></label>\n'
              '  <div style="position:absolute;left:-10000px" aria-hidden="true">'
              '<input type="text" name="website" tabindex="-1" autocomplete="off"></div>\n' + captcha)
    form_id = f"newsletter-signup-{slug}"
    plain = (f'<form method="post" action="{base}/lists/{slug}/embed">\n{fields}'
             f'  <button type="submit">Subscribe to {name}</button>\n</form>')
    token_field = json.dumps(widget["field"]) if widget else "null"
    script = (f'<form id="{form_id}" method="post" action="{base}/lists/{slug}/embed">\n{fields}'
              f'  <button type="submit">Subscribe to {name}</button>\n  <p role="status"></p>\n</form>\n'
              "<script>\n"
              f'document.getElementById("{form_id}").addEventListener("submit", async (event) => {{\n'
              "  event.preventDefault();\n"
              "  const form = event.target, status = form.querySelector('[role=status]');\n"
              "  const data = Object.fromEntries(new FormData(form));\n"
              f"  const tokenField = {token_field};\n"
              "  if (tokenField) data.captcha_token = data[tokenField];\n"
              "  try {\n"
              f'    const response = await fetch("{base}/api/v1/public/lists/{slug}/subscribe", {{\n'
              '      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(data)});\n'
              "    const answer = await response.json();\n"
              "    status.textContent = answer.message || answer.error;\n"
              "    if (response.ok) form.reset();\n"
              "  } catch (error) {\n"
              "    form.submit();  // no answer from the endpoint: post the plain form instead\n"
              "  }\n"
              "});\n"
              "</script>")
    return {"form": plain, "script": script}

