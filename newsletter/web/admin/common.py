"""What every admin page module shares: its router, rendering a page, the redirect after a form, reading a form.

Flash messages travel in the redirect's query string; `redirect` writes them and `flash_message` reads them, so
how a flash is carried is decided here and nowhere else.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from newsletter.auth import Principal
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
    suffix = f"?flash={flash}" if flash else ""
    return RedirectResponse(path + suffix, status_code=303)


def flash_message(request: Request) -> str | None:
    """The message a redirect left for this page, if any."""
    return request.query_params.get("flash")


async def read_form(request: Request) -> dict[str, Any]:
    return dict(await request.form())
