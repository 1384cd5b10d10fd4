"""The admin in the browser, one module per resource; this package only puts their routers together.

Each module translates forms to calls and results to pages: the rules are in subscribers/ and worker/ (the same
functions the CLI and the API call) and the questions asked of the database are named functions there
(subscribers.queries, worker.reports, mailer.store), so no module here issues SQL. Staff may work on issues and
sends and read subscribers; the rest needs an admin. Shared helpers are in `common`; the chart in `chart`.
"""

from __future__ import annotations

from fastapi import APIRouter

from newsletter.web.admin import (
    account,
    auth,
    dashboard,
    imports,
    issues,
    lists,
    segments,
    sends,
    subscribers,
    suppressions,
    tokens,
    users,
)

router = APIRouter()
for _resource in (auth, dashboard, lists, segments, subscribers, imports, suppressions, issues, sends, tokens, account,
                  users):
    router.include_router(_resource.router)
