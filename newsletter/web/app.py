"""The ASGI application: one FastAPI app that mounts the public pages, archive, admin, API and webhooks."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from mailer.collector import freeze_loaded
from mailer.db import GIL_HANDOVER_S
from mailer.settings import get_settings
from newsletter.web import (
    admin,
    apidocs,
    archive,
    embed,
    fastpost,
    oneclick,
    preview,
    public,
    tracking,
    webhooks,
)
from newsletter.web.api import api_app
from newsletter.web.bodylimit import BodyLimitMiddleware
from newsletter.web.csrf import CSRFCookieMiddleware
from newsletter.web.deps import LoginRequired
from newsletter.web.security_headers import SecurityHeadersMiddleware
from newsletter.web.templating import configure_templates


@asynccontextmanager
async def _lifespan(_app: FastAPI) -> AsyncIterator[None]:
    """Once a server process has started: everything loaded so far (the app, its modules, templates) lives as long
    as the process, so it is moved out of the garbage collector's sight. A full collection otherwise walks those
    ~170,000 objects and holds every request for 50-150 ms: that pause was the slowest 1% of clicks under load."""
    freeze_loaded()
    sys.setswitchinterval(GIL_HANDOVER_S)  # for the writer threads of newsletter/web/intake.py
    yield


def create_app() -> FastAPI:
    # No OpenTelemetry here: FastAPI's own checks whether a provider is configured on every request otherwise.
    app = FastAPI(title="Newsletter", docs_url=None, redoc_url=None, openapi_url=None, lifespan=_lifespan,
                  telemetry={"tracing": False, "metrics": False, "logs": False})
    configure_templates(development=get_settings().development)
    app.add_middleware(fastpost.FastPostPath)  # added first: innermost, inside the three below, before the router
    app.add_middleware(CSRFCookieMiddleware)
    app.add_middleware(BodyLimitMiddleware)  # before anything reads a body (the CSRF check reads forms)
    app.add_middleware(SecurityHeadersMiddleware)  # every answer of the app gets the headers, 413s included
    app.add_middleware(oneclick.OneClickFastPath)  # these two added last: outermost, before routing and the others
    app.add_middleware(tracking.TrackingFastPath)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.exception_handler(LoginRequired)
    async def login_required(_request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse(exc.location, status_code=303)

    @app.exception_handler(ClientDisconnect)
    async def client_gone(_request: Request, _exc: ClientDisconnect) -> Response:
        """The client hung up before its request body arrived: nothing was done, and nobody is left to answer.

        Not an application error, so no traceback in the log (a crowd of phones losing signal would flood it)."""
        return Response(status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if request.url.path.startswith("/admin") and exc.status_code == 403:
            return HTMLResponse(f"<!doctype html><title>Forbidden</title><h1>Forbidden</h1><p>{exc.detail}</p>"
                                '<p><a href="/admin">Back to the dashboard</a></p>', status_code=403)
        return Response(str(exc.detail), status_code=exc.status_code, headers=getattr(exc, "headers", None))

    app.include_router(public.router)
    app.include_router(embed.router)
    app.include_router(archive.router)
    app.include_router(preview.router)
    app.include_router(webhooks.router)
    app.include_router(admin.router)
    app.include_router(apidocs.router)
    app.mount("/api/docs/assets", apidocs.ASSETS)
    app.mount("/api/v1", api_app)
    return app
