"""Preview of a rendered issue at phone and desktop widths, side by side, as staff will see it in inboxes.

`preview_app(path)` serves one Markdown file and re-renders it on each reload, so an editor can keep the page open
while writing. The iframes are sandboxed: the email's HTML never runs script in our origin.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse, PlainTextResponse

from mailer.issue import IssueError, load_issue
from mailer.render import RenderError, render_issue

router = APIRouter()


def side_by_side(title: str, email_html: str, notes: list[str]) -> str:
    """The preview page: a 375 px phone frame and a 1024 px desktop frame of the same HTML."""
    doc = escape(email_html, quote=True)
    items = "".join(f"<li>{escape(n)}</li>" for n in notes)
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Preview: {escape(title)}</title>
<style>
body {{ margin:0; font:14px/1.5 system-ui, sans-serif; background:#e5e7eb; color:#111827; }}
header {{ padding:12px 20px; background:#111827; color:#fff; }}
.frames {{ display:flex; gap:24px; padding:20px; align-items:flex-start; overflow-x:auto; }}
figure {{ margin:0; }} figcaption {{ font-weight:600; margin-bottom:6px; }}
iframe {{ border:1px solid #9ca3af; border-radius:12px; background:#fff; height:1400px; }}
#phone {{ width:375px; }} #desktop {{ width:1024px; }}
ul.notes {{ margin:8px 20px; color:#92400e; }}
</style></head><body>
<header>Preview: {escape(title)}</header>
{f'<ul class="notes">{items}</ul>' if items else ''}
<div class="frames">
<figure><figcaption>Phone (375 px)</figcaption>
<iframe id="phone" sandbox title="Phone preview" srcdoc="{doc}"></iframe></figure>
<figure><figcaption>Desktop (1024 px)</figcaption>
<iframe id="desktop" sandbox title="Desktop preview" srcdoc="{doc}"></iframe></figure>
</div></body></html>"""


def preview_app(path: Path) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        try:
            issue = load_issue(path)
            rendered = render_issue(issue, force=True)
        except (IssueError, RenderError) as exc:
            return HTMLResponse(f"<pre>{escape(str(exc))}</pre>", status_code=422)
        return HTMLResponse(side_by_side(issue.subject, rendered.html, rendered.warnings))

    @app.get("/email.txt", response_class=PlainTextResponse)
    def text() -> str:
        return render_issue(load_issue(path), force=True).text

    return app
