"""The host's intake process (newsletter/web/intake_process.py): web processes hand it the public forms' writes;
when it is gone (killed, restarting) they write for themselves and nobody's request is lost or left waiting; it
reads only frames of our own user's processes and survives a broken one; `newsletter serve --workers 2` starts it
and takes it down."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from mailer.db import session_scope
from mailer.settings import reset_settings
from newsletter.web import intake, intake_process, intake_wire
from newsletter.web.app import create_app
from newsletter.web.intake_wire import IntakeClient, frame, read_frame
from newsletter.web.ratelimit import reset
from subscribers import mailing_lists
from subscribers.models import Subscriber, Subscription, SubscriptionStatus
from subscribers.tokens import Purpose, link
from tests.support.aio import run_async
from tests.support.mailbox import links, messages_to


@pytest.fixture
def host(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[intake_process.Intake]:
    """An intake process on this test's database, and this process's web app pointed at it."""
    reset()
    with session_scope() as session:
        mailing_lists.create_list(session, "weekly", "Digital Digest Weekly")
    with intake_process.running() as running:
        monkeypatch.setenv("NEWSLETTER_INTAKE_SOCKET", running.path)
        reset_settings()
        yield running
    reset_settings()


@pytest.fixture
def written_here(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The writes this test process did itself (it should do none while the intake process is up)."""
    seen: list[str] = []
    for writer in intake_process.WRITERS.values():
        real = writer.write_here

        async def counting(item: object, real=real, name=writer.name) -> object:  # type: ignore[no-untyped-def]
            seen.append(name)
            return await real(item)

        monkeypatch.setattr(writer, "write_here", counting)
    return seen


def _sign_up(client: TestClient, email: str) -> int:
    return client.post("/lists/weekly/embed", data={"email": email}).status_code


def _count(model: type, **where: object) -> int:
    with session_scope() as session:
        query = select(func.count()).select_from(model)
        for name, value in where.items():
            query = query.where(getattr(model, name) == value)
        return int(session.scalar(query) or 0)


def test_sign_up_confirm_and_leave_are_written_by_the_intake_process(host: intake_process.Intake,
                                                                     written_here: list[str]) -> None:
    client = TestClient(create_app())
    assert [_sign_up(client, f"reader{n}@example.com") for n in range(5)] == [200] * 5
    assert _sign_up(client, "reader0@example.com") == 200  # a repeat: the same answer, nothing twice
    assert _count(Subscription, status=SubscriptionStatus.PENDING) == 5 and _count(Subscriber) == 5
    confirm = urllib.parse.urlsplit(links(messages_to("reader1@example.com")[0], "/confirm/")[0]).path
    page = client.get(confirm)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    assert "Thanks for confirming" in client.post(confirm, data={"csrf_token": token}).text
    assert _count(Subscription, status=SubscriptionStatus.CONFIRMED) == 1
    with session_scope() as session:
        reader = session.scalar(select(Subscriber).where(Subscriber.email == "reader1@example.com"))
        assert reader is not None
        leave = urllib.parse.urlsplit(link(Purpose.UNSUBSCRIBE, reader.id, reader.subscriptions[0].list_id)).path
    answer = client.post(leave, data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 200 and _count(Subscription, status=SubscriptionStatus.UNSUBSCRIBED) == 1
    assert written_here == []  # every write went over the wire


def test_a_killed_intake_process_is_replaced_and_nobody_waits(host: intake_process.Intake,
                                                              written_here: list[str]) -> None:
    client = TestClient(create_app())
    assert _sign_up(client, "before@example.com") == 200 and written_here == []
    first = host.process
    assert first is not None and first.pid is not None
    os.kill(first.pid, signal.SIGKILL)
    first.join(10)
    started = time.monotonic()
    assert _sign_up(client, "meanwhile@example.com") == 200  # written here: the process is gone
    assert time.monotonic() - started < 5 and "signups" in written_here
    deadline = time.monotonic() + 30
    while (host.process is first or not os.path.exists(host.path)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert host.process is not first and host.process is not None and host.process.is_alive()
    written_here.clear()
    assert _sign_up(client, "after@example.com") == 200
    assert written_here == []  # over the wire again, to the new process
    assert _count(Subscription, status=SubscriptionStatus.PENDING) == 3


def test_a_hung_intake_process_does_not_hang_the_requests(host: intake_process.Intake, written_here: list[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopped (SIGSTOP: as wedged as a process gets), it does not answer: the request is written here after the
    answer timeout; when it wakes and writes the same sign-up again, nothing is done twice."""
    monkeypatch.setattr(intake_wire, "ANSWER_TIMEOUT_S", 1.0)
    client = TestClient(create_app())
    assert _sign_up(client, "warm@example.com") == 200 and written_here == []
    assert host.process is not None and host.process.pid is not None
    os.kill(host.process.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        assert _sign_up(client, "hung@example.com") == 200
        assert 1.0 <= time.monotonic() - started < 10 and written_here == ["signups"]
    finally:
        os.kill(host.process.pid, signal.SIGCONT)
    time.sleep(2)  # it wakes, writes the sign-up it was holding, and answers nobody
    assert _sign_up(client, "after@example.com") == 200
    assert written_here == ["signups"]  # over the wire again
    assert _count(Subscriber, email="hung@example.com") == 1
    assert _count(Subscription, status=SubscriptionStatus.PENDING) == 3
    assert len(messages_to("hung@example.com")) == 1  # the late second write sent no second email


def test_a_broken_peer_is_dropped_and_the_others_are_served(host: intake_process.Intake) -> None:
    for garbage in (b"\x00\x00\x00\x05hello", struct.pack("!I", 1 << 30), b"\x00\x00\x00\x10\x80\x05trunc"):
        with socket.socket(socket.AF_UNIX) as peer:
            peer.connect(host.path)
            peer.sendall(garbage)
            peer.shutdown(socket.SHUT_WR)
            peer.settimeout(10)
            assert peer.recv(100) == b""  # closed without an answer

    async def unknown_kind() -> object:
        reader, writer = await asyncio.open_unix_connection(host.path)
        writer.write(frame((7, "no-such-writer", None)))
        answer = await read_frame(reader)
        writer.close()
        return answer

    request_id, ok, value = run_async(unknown_kind())
    assert (request_id, ok) == (7, False) and isinstance(value, ValueError)
    assert TestClient(create_app()).post("/lists/weekly/embed", data={"email": "still@example.com"}).status_code == 200
    assert _count(Subscriber, email="still@example.com") == 1


def test_only_our_own_user_is_read(host: intake_process.Intake, monkeypatch: pytest.MonkeyPatch) -> None:
    mode = os.stat(Path(host.path).parent).st_mode & 0o777
    assert mode == 0o700 and os.stat(host.path).st_mode & 0o077 == 0

    async def check() -> tuple[bool, bool]:
        server_side: list[asyncio.StreamWriter] = []
        server = await asyncio.start_unix_server(lambda _r, w: server_side.append(w), path=host.path + ".probe")
        _, writer = await asyncio.open_unix_connection(host.path + ".probe")
        while not server_side:
            await asyncio.sleep(0.01)
        ours = intake_process._same_user(server_side[0])
        monkeypatch.setattr(os, "getuid", lambda: os.geteuid() + 1)
        theirs = intake_process._same_user(server_side[0])
        writer.close()
        server.close()
        return ours, theirs

    assert run_async(check()) == (True, False)


def test_without_an_intake_process_each_web_process_writes(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    reset()
    with session_scope() as session:
        mailing_lists.create_list(session, "weekly", "Weekly")
    monkeypatch.setenv("NEWSLETTER_INTAKE_SOCKET", "/nonexistent/intake.sock")
    reset_settings()
    assert isinstance(intake.intake_client(), IntakeClient)
    client = TestClient(create_app())
    assert _sign_up(client, "alone@example.com") == 200 and _count(Subscriber, email="alone@example.com") == 1


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _children(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                found.add(int(entry))
    return found


def test_serve_with_workers_runs_and_stops_an_intake_process(pg_url: str) -> None:
    reset()
    with session_scope() as session:
        mailing_lists.create_list(session, "weekly", "Weekly")
    port = _free_port()
    server = subprocess.Popen([str(Path(sys.executable).parent / "newsletter"), "serve", "--workers", "2", "--port",
                               str(port), "--no-access-log"], env=os.environ.copy(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(base + "/healthz", timeout=2)
                break
            except OSError:
                time.sleep(0.2)
        children = _children(server.pid)
        assert len(children) >= 3  # two web processes and the intake process
        body = urllib.parse.urlencode({"email": "served@example.com"}).encode()
        with urllib.request.urlopen(base + "/lists/weekly/embed", data=body, timeout=10) as answer:
            assert answer.status == 200
        assert _count(Subscriber, email="served@example.com") == 1
    finally:
        server.send_signal(signal.SIGTERM)
        _, errors = server.communicate(timeout=30)
    deadline = time.monotonic() + 15
    while any(Path(f"/proc/{child}").exists() for child in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(Path(f"/proc/{child}").exists() for child in children)  # nobody left behind
    assert b"Traceback" not in errors
