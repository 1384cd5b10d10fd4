"""One Jinja2 environment for every HTML page, autoescaping on, with the CSRF token and settings in context."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

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
    settings = get_settings()
    lang = page_language(mailing_list)
    look = mailing_list.audience(settings).brand if mailing_list is not None else Brand()
    ctx: dict[str, Any] = {
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
    ctx.update(context or {})
    return templates.TemplateResponse(request, name, ctx, status_code=status_code)
