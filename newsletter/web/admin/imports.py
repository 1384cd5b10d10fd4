"""CSV in and out: a list's export, and an upload imported in the background with a page that follows it."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

from fastapi import Depends, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from sqlalchemy.orm import Session

from mailer.settings import get_settings
from newsletter.auth import Principal
from newsletter.web import imports as import_runs
from newsletter.web.admin.common import admin_router, page, redirect
from newsletter.web.csrf import verify_csrf
from newsletter.web.deps import db_session, page_admin, page_user
from newsletter.web.forms import read_form
from subscribers import importer, queries, service

router = admin_router()


@router.get("/export")
def export(list_slug: str = Query(..., alias="list"), user: Principal = Depends(page_user),
           session: Session = db_session) -> Response:
    buffer = io.StringIO()
    try:
        importer.export_csv(session, list_slug, buffer)
    except service.ServiceError as exc:
        return JSONResponse({"error": str(exc)}, status_code=404)
    return StreamingResponse(iter([buffer.getvalue()]), media_type="text/csv",
                             headers={"Content-Disposition": f'attachment; filename="{list_slug}.csv"'})


@router.get("/import", response_class=HTMLResponse)
def import_page(request: Request, list_slug: str = Query("", alias="list"), user: Principal = Depends(page_admin),
                session: Session = db_session) -> HTMLResponse:
    return page(request, "import.html", user, "subscribers", lists=queries.all_lists(session), list_slug=list_slug)


@router.post("/import", dependencies=[Depends(verify_csrf)])
async def import_upload(request: Request, user: Principal = Depends(page_admin),
                        session: Session = db_session) -> Response:
    form = await read_form(request)
    upload = form.get("file")
    lists = queries.all_lists(session)
    list_slug = str(form.get("list", ""))
    confirmed, consent_source = form.get("confirmed") == "1", str(form.get("consent_source", "")).strip()
    problem = ("Choose a CSV file." if upload is None or isinstance(upload, str) else
               "Say where these people consented (consent source)." if confirmed and not consent_source else
               "Choose a list." if list_slug not in {m.slug for m in lists} else "")
    if problem or upload is None or isinstance(upload, str):
        return page(request, "import.html", user, "subscribers", lists=lists, list_slug=list_slug, flash=problem,
                    flash_kind="error", status_code=400)
    folder = Path(get_settings().data_dir) / "imports"
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".csv", delete=False) as handle:
        while chunk := await upload.read(1 << 20):
            handle.write(chunk)
        path = Path(handle.name)
    key = import_runs.start(path, list_slug, confirmed=confirmed, consent_source=consent_source,
                            welcome=form.get("welcome") == "1")
    return redirect(f"/admin/import/run/{key}")


@router.get("/import/run/{key}", response_class=HTMLResponse)
def import_status(request: Request, key: str, user: Principal = Depends(page_admin),
                  session: Session = db_session) -> HTMLResponse:
    """Refreshes itself while the import runs (no JavaScript needed), then shows the result."""
    state = import_runs.progress(key)
    lists = queries.all_lists(session)
    if state is None:
        return page(request, "import.html", user, "subscribers", lists=lists, flash_kind="error", status_code=404,
                    flash="This import is unknown here (it may run in another web process); see the list's counts.")
    return page(request, "import.html", user, "subscribers", lists=lists, list_slug=state.list_slug, state=state,
                result=state.result, running=not state.done.is_set(), flash=state.error or None,
                flash_kind="error" if state.error else None)


@router.get("/import/{job_id}/report")
def import_report(job_id: int, user: Principal = Depends(page_admin),
                  session: Session = db_session) -> Response:
    report = queries.import_report_path(session, job_id)
    if report is None:
        return JSONResponse({"error": "No report for this import."}, status_code=404)
    return FileResponse(report, media_type="text/csv", filename=f"import-{job_id}-report.csv")
