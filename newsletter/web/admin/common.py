"""What every admin page module shares: its router, rendering a page, the redirect after a form, reading a form.

Flash messages travel in the redirect's query string, signed (newsletter/web/flash.py): `redirect` writes them and
`flash_message` reads them, so a link from elsewhere cannot put words on an admin page.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from newsletter.auth import Principal
from newsletter.web import forms
from newsletter.web.flash import read_flash, redirect_with_flash
from newsletter.web.templating import render_page


def admin_router() -> APIRouter:
    """A resource's router: every admin route lives under /admin and stays out of any OpenAPI document."""
    return APIRouter(prefix="/admin", include_in_schema=False)


def page(request: Request, name: str, user: Principal | None, nav: str = "", **context: Any) -> HTMLResponse:
    """Render templates/pages/admin/`name`; `nav` marks the menu entry, `status_code` in context sets the status."""
    status = context.pop("status_code", 200)
    return render_page(request, f"admin/{name}", {"user": user, "nav": nav, **context}, status_code=status)


def redirect(path: str, flash: str = "") -> RedirectResponse:
    """303 after a form post (the browser then GETs `path`), with a message for the next page to show."""
    return redirect_with_flash(path, flash)


def flash_message(request: Request) -> str | None:
    """The message a redirect left for this page, if any."""
    return read_flash(request)


async def read_form(request: Request) -> dict[str, Any]:
    return dict(await forms.read_form(request))
