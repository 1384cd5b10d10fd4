"""How web processes hand their public-form writes to the host's intake process (newsletter/web/intake_process.py).

Why a process of its own: with a writer thread in every web process (newsletter/web/intake.py), each process paid a
group's fixed cost (~5 ms of CPU: a session, five statements, a commit, two Redis calls) for its share of the crowd,
and its writer thread and its event loop took turns at one interpreter lock. One writer per host makes groups of
every process's requests, and leaves the web processes' interpreters to the requests (bench/web.py,
docs/benchmarks.md).

The wire: a Unix socket in a directory only the service's user can enter (pickle may only come from our own
processes), frames of a 4-byte length and a pickle. A request is (id, kind, item), an answer (id, ok, value): the
write's result, or the exception it raised alone. A sign-up travels with its list's id, not the list (the intake
process reads lists through its own page cache).

If the intake process cannot be reached, goes away with writes outstanding, or leaves a write unanswered for
ANSWER_TIMEOUT_S (stopped, wedged), the web process writes them itself
(`IntakeUnavailable`): every write here is idempotent (a repeated sign-up, confirmation or unsubscribe changes
nothing twice), so a write that may have committed before the connection broke is safe to do again, and nobody's
request is lost or left waiting.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import struct
from typing import Any

log = logging.getLogger(__name__)

HEADER = struct.Struct("!I")
# A write not answered in this time is written here instead (IntakeUnavailable): an intake process that hangs (stopped,
# wedged) must not hang the requests. A group commits in tens of milliseconds; a slow database makes it seconds.
ANSWER_TIMEOUT_S = 15.0
MAX_FRAME = 16 * 1024 * 1024  # a request is a few hundred bytes; more means a broken peer, not a big write


class IntakeUnavailable(Exception):
    """The intake process did not take or did not answer this write: write it here."""


def frame(message: Any) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> Any:
    """The next message; IncompleteReadError when the peer has gone, ValueError for a frame past MAX_FRAME."""
    (size,) = HEADER.unpack(await reader.readexactly(HEADER.size))
    if size > MAX_FRAME:
        raise ValueError(f"intake frame of {size} bytes")
    # Only our own processes reach the socket: its directory is 0700, and the intake process checks that a peer
    # runs as this user (intake_process._same_user) before reading anything from it.
    return pickle.loads(await reader.readexactly(size))  # noqa: S301


def answer_frame(request_id: int, result: Any) -> bytes:
    """The answer to a request; an exception that cannot be pickled travels as its description."""
    ok = not isinstance(result, BaseException)
    try:
        return frame((request_id, ok, result))
    except Exception:  # an exception holding a connection, a lock, ...
        return frame((request_id, False, RuntimeError(repr(result))))


class Outbox:
    """Frames for one connection, written together once the event loop has run everything now ready: a group's
    answers (or a loop turn's requests) cost one system call instead of one each."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._frames: list[bytes] = []

    def put(self, data: bytes) -> None:
        if not self._frames:
            asyncio.get_running_loop().call_soon(self._flush)
        self._frames.append(data)

    def _flush(self) -> None:
        data, self._frames = b"".join(self._frames), []
        if not self._writer.is_closing():
            self._writer.write(data)


class IntakeClient:
    """One connection per event loop of this process, opened at the first write and again after a failure."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._connections: dict[asyncio.AbstractEventLoop, _Connection] = {}

    async def call(self, kind: str, item: Any) -> Any:
        loop = asyncio.get_running_loop()
        for gone in [other for other in self._connections if other.is_closed()]:  # (tests run a loop a request)
            del self._connections[gone]
        connection = self._connections.get(loop)
        if connection is None or connection.closed:
            try:
                connection = await _Connection.open(self.path)
            except OSError as exc:
                raise IntakeUnavailable(f"cannot reach the intake process at {self.path}: {exc}") from exc
            self._connections[loop] = connection
        return await connection.call(kind, item)


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._outbox = Outbox(writer)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 0
        self.closed = False
        self._reading = asyncio.get_running_loop().create_task(self._read(reader))

    @classmethod
    async def open(cls, path: str) -> _Connection:
        reader, writer = await asyncio.open_unix_connection(path)
        return cls(reader, writer)

    async def call(self, kind: str, item: Any) -> Any:
        self._next_id += 1
        request_id = self._next_id
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        self._outbox.put(frame((request_id, kind, item)))  # a broken connection answers it through _read
        try:
            return await asyncio.wait_for(future, ANSWER_TIMEOUT_S)
        except TimeoutError as exc:  # a late answer finds nobody waiting, and is dropped
            raise IntakeUnavailable(f"no answer from the intake process in {ANSWER_TIMEOUT_S} s") from exc
        finally:
            self._waiting.pop(request_id, None)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                request_id, ok, value = await read_frame(reader)
                future = self._waiting.get(request_id)
                if future is None or future.done():  # its request was cancelled (the client hung up)
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
        except Exception as exc:  # gone, or a frame that cannot be read: nobody may be left waiting
            self._close(exc)
        except asyncio.CancelledError:  # this event loop is closing: nothing went wrong
            self._close(None)
            raise

    def _close(self, reason: BaseException | None) -> None:
        """Everyone still waiting writes for themselves (IntakeUnavailable); the next write reconnects."""
        if not self.closed and reason is not None:
            log.warning("the intake process went away (%r); %s writes are done here", reason, len(self._waiting))
        self.closed = True
        self._writer.close()
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(IntakeUnavailable(repr(reason)))
