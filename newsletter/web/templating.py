"""One Jinja2 environment for every HTML page, autoescaping on, with the CSRF token and settings in context."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markupsafe import escape

import templates as templates_pkg
from mailer.brand import Brand
from mailer.i18n import translations
from mailer.settings import get_settings
from subscribers.models import MailingList

PAGES_DIR = Path(templates_pkg.__file__).parent / "pages"
templates = Jinja2Templates(directory=str(PAGES_DIR))


def configure_templates(development: bool) -> None:
    """Re-read a changed template file only in development. Jinja's auto_reload stats every template a page
    extends or includes on every render (py-spy showed getmtime on each request); a deployed server's templates
    change only with a new release, which restarts it."""
    templates.env.auto_reload = development


def page_language(mailing_list: MailingList | None) -> str:
    """A list's page speaks the list's language; a page for no list (the archive, a broken link), the default."""
    return (mailing_list.language if mailing_list is not None else None) or get_settings().language


def gettext_for(mailing_list: MailingList | None) -> Callable[[str], str]:
    return translations(page_language(mailing_list)).gettext


def render_page(request: Request, name: str, context: dict[str, Any] | None = None,
                status_code: int = 200, *, mailing_list: MailingList | None = None) -> HTMLResponse:
    """A page in the language and brand of `mailing_list` (the service's own when None)."""
    ctx = _page_context(request, mailing_list)
    ctx.update(context or {})
    return templates.TemplateResponse(request, name, ctx, status_code=status_code)


def _page_context(request: Request, mailing_list: MailingList | None) -> dict[str, Any]:
    """What every page's template may use: the request's tokens, the look and the language."""
    settings = get_settings()
    lang = page_language(mailing_list)
    look = mailing_list.audience(settings).brand if mailing_list is not None else Brand()
    return {
        "request": request,
        "csrf_token": getattr(request.state, "csrf_token", ""),
        "csp_nonce": getattr(request.state, "csp_nonce", ""),  # <script nonce=...>: see security_headers.py
        "brand": look.name or settings.from_name,
        "postal_address": look.postal_address or settings.postal_address,
        "accent": look.accent, "accent_dark": look.accent_dark, "logo_url": look.logo_url,
        "user": getattr(request.state, "user", None),
        "lang": lang,
        "_": translations(lang).gettext,
    }


# One-message pages ---------------------------------------------------------------------------------------------
#
# The answer to a sign-up or a confirmation is a one-message page. Rendering it through Jinja was a third of the CPU
# of answering such a post (bench/web.py, cProfile). So the page is rendered once per look (language, brand, number
# of paragraphs, with or without a button) with a marker in place of every value, and each answer fills the markers
# in with the values escaped as Jinja's autoescape would (tests/newsletter/test_answer_bytes.py holds the two to
# the same bytes).
MESSAGE_PAGE = "public/message.html"
_SLOT = re.compile(r"\x00slot(\d+)\x00")
_skeletons: dict[tuple[Any, ...], list[str]] = {}


def message_page(request: Request, heading: str, paragraphs: Sequence[str], *, action_url: str | None = None,
                 action_label: str = "", status_code: int = 200,
                 mailing_list: MailingList | None = None) -> HTMLResponse:
    """What `render_page(request, MESSAGE_PAGE, ...)` would answer for these values."""
    settings = get_settings()
    if settings.development:  # templates may change under a running server
        return render_page(request, MESSAGE_PAGE, {"heading": heading, "paragraphs": paragraphs,
                                                   "action_url": action_url, "action_label": action_label},
                           status_code=status_code, mailing_list=mailing_list)
    look = mailing_list.audience(settings).brand if mailing_list is not None else Brand()
    key = (page_language(mailing_list), look, settings.from_name, settings.postal_address, len(paragraphs),
           bool(action_url))
    parts = _skeletons.get(key)
    if parts is None:
        parts = _SLOT.split(_skeleton(request, len(paragraphs), bool(action_url), mailing_list))
        if len(_skeletons) >= 512:  # bounded: one per list, language and shape in use
            _skeletons.clear()
        _skeletons[key] = parts
    values = [getattr(request.state, "csrf_token", ""), getattr(request.state, "csp_nonce", ""), heading,
              action_url or "", action_label, *paragraphs]  # in the order of _skeleton's slots
    page = [str(escape(values[int(part)])) if n % 2 else part for n, part in enumerate(parts)]
    return HTMLResponse("".join(page), status_code=status_code)


def _skeleton(request: Request, paragraphs: int, action: bool, mailing_list: MailingList | None) -> str:
    """The page with a marker for each value: csrf token, nonce, heading, action URL and label, paragraphs."""
    slots = [f"\x00slot{n}\x00" for n in range(5 + paragraphs)]
    context = {"csrf_token": slots[0], "csp_nonce": slots[1], "heading": slots[2],
               "action_url": slots[3] if action else None, "action_label": slots[4], "paragraphs": slots[5:]}
    return templates.env.get_template(MESSAGE_PAGE).render({**_page_context(request, mailing_list), **context})
