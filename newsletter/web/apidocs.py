"""`/api/docs`: the API explorer (Swagger UI) served from the app itself, never from a CDN.

The assets come from the `swagger-ui-bundle` package; the page has no inline script (the start-up code is a file of
ours), so it works under the same Content-Security-Policy as every other page.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

router = APIRouter(include_in_schema=False)
ASSETS = StaticFiles(directory=str(Path(swagger_ui_path)))
SPEC_URL = "/api/v1/openapi.json"

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Newsletter API</title><link rel="icon" href="/api/docs/assets/favicon-32x32.png">
<link rel="stylesheet" href="/api/docs/assets/swagger-ui.css"></head>
<body><div id="api-docs"></div>
<script src="/api/docs/assets/swagger-ui-bundle.js"></script>
<script src="/api/docs/start.js"></script></body></html>"""

_START = f"""window.addEventListener("load", function () {{
  window.ui = SwaggerUIBundle({{url: "{SPEC_URL}", dom_id: "#api-docs", deepLinking: true,
    persistAuthorization: false, tryItOutEnabled: false}});
}});
"""


@router.get("/api/docs", response_class=HTMLResponse)
def api_docs() -> HTMLResponse:
    return HTMLResponse(_PAGE)


@router.get("/api/docs/start.js")
def api_docs_start() -> Response:
    return Response(_START, media_type="text/javascript", headers={"Cache-Control": "public, max-age=3600"})
