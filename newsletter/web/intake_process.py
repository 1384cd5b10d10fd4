"""The host's intake process: the public forms' writers (newsletter/web/intake.py) for every web process of a
`newsletter serve --workers N`, reached over a Unix socket (the wire and the reasons: intake_wire.py).

`running()` is what `serve` wraps uvicorn in: it starts this process before the web processes, starts it again if
it dies (the web processes write for themselves meanwhile), and stops it after them. The process itself answers
each request with the same group writers a web process would use (`GroupWriter.write_here`), and leaves when its
parent has gone (a `serve` killed outright must not leave it behind).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailer.collector import freeze_loaded
from mailer.db import GIL_HANDOVER_S
from newsletter.web import intake, pagecache
from newsletter.web.intake_wire import Outbox, answer_frame, read_frame

log = logging.getLogger(__name__)

WRITERS: dict[str, intake.GroupWriter[Any, Any]] = {writer.name: writer for writer in (
    intake.SIGNUPS, intake.CONFIRMATIONS, intake.LEAVES)}
START_TIMEOUT_S = 20.0
RESTART_DELAY_S = 0.5


async def from_wire(item: Any) -> Any:
    """An item as its writer takes it: a sign-up gets its list back (read through the page cache)."""
    if isinstance(item, intake.WireSignUp):
        mailing_list = await pagecache.list_by_id(item.list_id) if item.list_id is not None else None
        return intake.signup_from_wire(item, mailing_list)
    return item


async def _answer(outbox: Outbox, request_id: int, kind: str, item: Any) -> None:
    try:
        result = await WRITERS[kind].write_here(await from_wire(item))
    except Exception as exc:  # the write's own error, for its request alone
        result = exc
    outbox.put(answer_frame(request_id, result))


async def _connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One web process: its requests, each answered when its group has committed (in any order)."""
    pending: set[asyncio.Task[None]] = set()
    outbox = Outbox(writer)
    if not _same_user(writer):
        log.error("intake: refused a connection from another user")
        writer.close()
        return
    try:
        while True:
            request_id, kind, item = await read_frame(reader)
            if kind not in WRITERS:
                outbox.put(answer_frame(request_id, ValueError(f"no intake writer {kind!r}")))
                continue
            task = asyncio.get_running_loop().create_task(_answer(outbox, request_id, kind, item))
            pending.add(task)
            task.add_done_callback(pending.discard)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # that web process went away: what it asked for is still written
    except Exception:
        log.exception("intake: a broken request; closing its connection")
    finally:
        if pending:
            await asyncio.wait(pending)
        writer.close()


def _same_user(writer: asyncio.StreamWriter) -> bool:
    """The peer's user (SO_PEERCRED: pid, uid, gid) is ours: pickle is read only from our own processes."""
    sock = writer.get_extra_info("socket")
    credentials = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return bool(struct.unpack("3i", credentials)[1] == os.getuid())


async def _serve(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    server = await asyncio.start_unix_server(_connection, path=path)
    os.chmod(path, 0o600)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    parent = os.getppid()
    while not stop.is_set() and os.getppid() == parent:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
    server.close()
    await server.wait_closed()


def main(path: str) -> None:
    """The process's entry point (spawned by `running`)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s intake: %(message)s")
    freeze_loaded()  # as the web processes do (app._lifespan): what is loaded now lives as long as the process
    sys.setswitchinterval(GIL_HANDOVER_S)
    asyncio.run(_serve(path))


@dataclass
class Intake:
    """The running intake process as `running` keeps it: its socket, and the process (a new one after a restart)."""

    path: str
    process: multiprocessing.process.BaseProcess | None = None


@contextlib.contextmanager
def running() -> Iterator[Intake]:
    """An intake process for the duration of the block, started again whenever it dies."""
    directory = tempfile.mkdtemp(prefix="newsletter-intake-")  # 0700: only this user reaches the socket
    path = str(Path(directory) / "intake.sock")
    intake_now = Intake(path)
    stopping = threading.Event()
    context = multiprocessing.get_context("spawn")

    def start() -> multiprocessing.process.BaseProcess:
        process = context.Process(target=main, args=(path,), name="newsletter-intake", daemon=False)
        process.start()
        intake_now.process = process
        deadline = time.monotonic() + START_TIMEOUT_S
        while not os.path.exists(path) and process.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        return process

    def supervise(process: multiprocessing.process.BaseProcess) -> None:
        while not stopping.is_set():
            process.join()
            if stopping.is_set():
                return
            log.error("the intake process exited (code %s); starting it again", process.exitcode)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            time.sleep(RESTART_DELAY_S)
            if not stopping.is_set():
                process = start()

    supervisor = threading.Thread(target=supervise, args=(start(),), name="intake-supervisor", daemon=True)
    supervisor.start()
    try:
        yield intake_now
    finally:
        stopping.set()
        if intake_now.process is not None:
            intake_now.process.terminate()
            intake_now.process.join(10)
            if intake_now.process.is_alive():
                intake_now.process.kill()
        shutil.rmtree(directory, ignore_errors=True)
