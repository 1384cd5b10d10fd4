"""One Jinja2 environment for every HTML page, autoescaping on, with the CSRF token and settings in context."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

import templates as templates_pkg
from mailer.settings import get_settings

PAGES_DIR = Path(templates_pkg.__file__).parent / "pages"
templates = Jinja2Templates(directory=str(PAGES_DIR))


def render_page(request: Request, name: str, context: dict[str, Any] | None = None,
                status_code: int = 200) -> HTMLResponse:
    settings = get_settings()
    ctx: dict[str, Any] = {
        "request": request,
        "csrf_token": getattr(request.state, "csrf_token", ""),
        "csp_nonce": getattr(request.state, "csp_nonce", ""),  # <script nonce=...>: see security_headers.py
        "brand": settings.from_name,
        "postal_address": settings.postal_address,
        "user": getattr(request.state, "user", None),
    }
    ctx.update(context or {})
    return templates.TemplateResponse(request, name, ctx, status_code=status_code)
