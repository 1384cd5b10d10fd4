"""Request bodies are capped before authentication, against the real app under uvicorn on a loopback socket.

The client speaks raw HTTP/1.1 over a socket so that it can stream a body of any size (chunked, or under a
Content-Length that lies) and read the answer while it is still sending, as an attacker's client would.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mailer.db import session_scope
from newsletter.auth import create_user
from newsletter.models import Role
from newsletter.web.app import create_app
from newsletter.web.ratelimit import reset
from subscribers import mailing_lists
from tests.support.rawhttp import MB, chunked, post_raw
from tests.support.server import serve


def _peak_rss_reset() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # Linux: reset this process's peak RSS (VmHWM)


def _peak_rss() -> int:
    match = re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text())
    assert match is not None
    return int(match.group(1)) * 1024


def _raw(total: int, piece: int = MB) -> Iterator[bytes]:
    block = b"x" * piece
    for _ in range(total // piece):
        yield block


@pytest.fixture
def server(sqlite_url: str) -> Iterator[str]:
    with serve() as base:
        yield base


def test_an_anonymous_huge_json_body_is_cut_off_with_413_and_not_buffered(server: str) -> None:
    _peak_rss_reset()
    before = _peak_rss()
    started = time.monotonic()
    response, sent = post_raw(server, "/api/v1/issues", {"Content-Type": "application/json",
                                                      "Transfer-Encoding": "chunked"}, chunked(200 * MB))
    assert response.status == 413, response.data[:300]
    assert sent < 50 * MB  # the server stopped taking the body long before its end
    assert _peak_rss() - before < 40 * MB, (_peak_rss() - before) / MB
    assert time.monotonic() - started < 60


def test_a_declared_length_over_the_limit_is_refused_before_the_body(server: str) -> None:
    response, _ = post_raw(server, "/api/v1/issues", {"Content-Type": "application/json",
                                                   "Content-Length": str(10 * 1024 * MB)}, iter(()), timeout=10)
    assert response.status == 413  # answered without waiting for 10 GB


def test_a_content_length_that_lies_does_not_get_past_the_count(server: str) -> None:
    """Declares 100 bytes but streams 60 MB chunked. Under h11 the chunked framing wins, as HTTP says, and the count
    of what really arrives decides (413); httptools, uvicorn's parser with the project's dependencies, refuses a
    request carrying both headers before any of its body is read (400: RFC 9112 6.3 calls it a smuggling attempt).
    Either way nothing gets in and nothing is buffered."""
    _peak_rss_reset()
    before = _peak_rss()
    response, sent = post_raw(server, "/api/v1/issues", {"Content-Type": "application/json", "Content-Length": "100",
                                                      "Transfer-Encoding": "chunked"}, chunked(60 * MB))
    assert response.status in (400, 413), response.data[:300]
    assert sent < 30 * MB and _peak_rss() - before < 40 * MB


def test_multipart_uploads_are_capped_and_the_csv_route_has_its_own_limit(server: str, settings) -> None:
    boundary = "xyzzy"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\n"
            "Content-Type: text/csv\r\n\r\n").encode()

    def body(total: int) -> Iterator[bytes]:
        yield f"{len(head):x}\r\n".encode() + head + b"\r\n"
        yield from chunked(total)

    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}", "Transfer-Encoding": "chunked"}
    for path in ("/lists/weekly/subscribe", "/admin/lists", "/preferences/x"):
        response, sent = post_raw(server, path, headers, body(20 * MB))
        assert response.status == 413, (path, response.data[:300])
        assert sent < 10 * MB
    settings.import_max_upload_bytes = 5 * MB
    response, sent = post_raw(server, "/admin/import", headers, body(40 * MB))
    assert response.status == 413 and sent < 20 * MB


def test_bodies_under_the_limits_still_work(sqlite_url: str, settings) -> None:
    """A 3 MB CSV upload passes (over the form limit, under the upload limit); the API answers 401, not 413."""
    reset()
    password = "correct horse battery staple"
    with session_scope() as session:
        create_user(session, "admin@example.com", password, Role.ADMIN)
        mailing_lists.create_list(session, "weekly", "Weekly", double_opt_in=False)
    client = TestClient(create_app())
    token = re.search(r'name="csrf_token" value="([^"]+)"',  # type: ignore[union-attr]
                      client.get("/admin/login").text).group(1)
    client.post("/admin/login", data={"email": "admin@example.com", "password": password, "csrf_token": token})
    rows = "email,name\n" + "".join(f"r{i}@example.org,Reader number {i}\n" for i in range(90_000))
    assert len(rows) > 3 * MB > settings.max_body_bytes
    started = client.post("/admin/import", data={"csrf_token": token, "list": "weekly"},
                          files={"file": ("people.csv", rows.encode(), "text/csv")}, follow_redirects=False)
    assert started.status_code == 303
    assert client.post("/api/v1/issues", json={"source": "x" * 1000}).status_code == 401
