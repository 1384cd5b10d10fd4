"""CSV import from the admin: it runs in the background while a self-refreshing page shows its progress, then the
result and the row-level report."""

from __future__ import annotations

import re
import time

from fastapi.testclient import TestClient

from mailer.db import session_scope
from newsletter.auth import create_user
from newsletter.models import Role
from newsletter.web.app import create_app
from newsletter.web.ratelimit import reset
from subscribers import mailing_lists

PASSWORD = "correct horse battery staple"
ROWS = 40_000


def test_import_shows_progress_then_result_and_report(pg_url: str) -> None:
    reset()
    with session_scope() as session:
        create_user(session, "admin@example.com", PASSWORD, Role.ADMIN)
        mailing_lists.create_list(session, "weekly", "Weekly", double_opt_in=False)
    client = TestClient(create_app())
    token = re.search(r'name="csrf_token" value="([^"]+)"',  # type: ignore[union-attr]
                      client.get("/admin/login").text).group(1)
    client.post("/admin/login", data={"email": "admin@example.com", "password": PASSWORD, "csrf_token": token})
    body = "email,name\n" + "".join(f"reader{i}@example.org,Reader {i}\n" for i in range(ROWS)) + "broken,Row\n"

    refused = client.post("/admin/import", data={"csrf_token": token, "list": "weekly", "confirmed": "1"},
                          files={"file": ("people.csv", body.encode(), "text/csv")})
    assert refused.status_code == 400 and "consent source" in refused.text

    started = client.post("/admin/import", data={"csrf_token": token, "list": "weekly", "confirmed": "1",
                                                 "consent_source": "signup sheet"},
                          files={"file": ("people.csv", body.encode(), "text/csv")}, follow_redirects=False)
    assert started.status_code == 303 and started.headers["location"].startswith("/admin/import/run/")
    seen: list[tuple[int, int]] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        page = client.get(started.headers["location"]).text
        bar = re.search(r'<progress max="(\d+)" value="(\d+)">', page)
        assert bar is not None
        seen.append((int(bar.group(2)), int(bar.group(1))))
        if 'id="import-result"' in page:
            break
        assert '<meta http-equiv="refresh"' in page  # works without JavaScript
        time.sleep(0.05)
    assert f"<strong>{ROWS:,}</strong> imported" in page and "1 errors" in page
    assert seen[-1][0] == seen[-1][1] == len(body.encode())
    assert any(0 < done < total for done, total in seen), seen  # a bar that really moved
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    report_link = re.search(r'href="(/admin/import/\d+/report)"', page)
    assert report_link is not None
    report = client.get(report_link.group(1))
    assert report.status_code == 200 and "broken" in report.text
    with session_scope() as session:
        weekly = mailing_lists.get_list(session, "weekly")
        assert mailing_lists.list_counts(session, weekly.id)["confirmed"] == ROWS
    assert client.get("/admin/import/run/unknown").status_code == 404
