"""The ASGI application: one FastAPI app that mounts the public pages, admin, API and webhooks."""

from __future__ import annotations

from fastapi import FastAPI

from newsletter.web import admin, api, preview, public, webhooks
from newsletter.web.csrf import CSRFCookieMiddleware


def create_app() -> FastAPI:
    app = FastAPI(title="Newsletter", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(CSRFCookieMiddleware)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(public.router)
    app.include_router(preview.router)
    app.include_router(webhooks.router)
    app.include_router(admin.router)
    app.include_router(api.router)
    return app
