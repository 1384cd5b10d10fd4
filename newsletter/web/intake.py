"""Group commit for the public forms: concurrent sign-ups, confirmations and unsubscribes are written together.

A sign-up page linked from a popular post, or a mailbox provider replaying one-click unsubscribes, sends hundreds of
writes a second. Written one request at a time, each took a thread, a pooled connection, five to eight statements
and a commit: about 3 ms of CPU, so two processes topped out near 250 a second (bench/web.py, docs/benchmarks.md).

Here each process has one writer thread per kind of write. A request puts its write in the queue and awaits it on
the event loop; the writer takes everything queued, writes it with the set-based rules (`subscribers.intake`,
`service.confirm_many`, `service.unsubscribe_many`: the same statements for one or two hundred) in one transaction,
commits, and only then answers every request of the group; the emails the group asked for are enqueued after that
(one task per kind), since nobody's answer waits on them. Nobody is told "done" before it is durable, and a crowd
costs a few statements per group instead of per person: the busier it is, the larger the groups.

If a group fails (a deadlock, a value the database refuses), each of its writes is retried alone, so one bad
request cannot fail the others; a write that fails alone answers its request with the error.

Under `newsletter serve --workers N` the writers run in one intake process for the host instead
(newsletter/web/intake_process.py): `submit` hands the write over the wire (intake_wire.py), and writes here only
when that process cannot be reached.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from mailer.db import session_scope
from mailer.settings import get_settings
from newsletter.web.intake_wire import IntakeClient, IntakeUnavailable
from newsletter.web.ratelimit import limiter
from subscribers.intake import SignedUp, SignUp, signup_many
from subscribers.models import ConsentSource, MailingList
from subscribers.service import Confirmation, ConfirmResult, Leave, Notify, confirm_many, unsubscribe_many
from worker.app import celery_app
from worker.campaigns import await_handover, in_flight_among
from worker.notifications import notify_now

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
MAX_GROUP = 200  # writes per transaction: bounds one statement's size and how long its row locks are held


class GroupWriter(Generic[T, R]):
    """Writes submitted from event loops, done by one thread in groups: `write(items)` returns a result per item,
    in order, once its transaction has committed."""

    def __init__(self, name: str, write: Callable[[Sequence[T]], list[R]],
                 then: Callable[[list[R]], None] | None = None, wire: Callable[[T], Any] = lambda item: item) -> None:
        self.name = name
        self._write = write
        self._then = then  # after the group's requests are answered: what they need not wait for
        self._wire = wire  # what travels to the intake process (intake_process.from_wire is the way back)
        self._queue: list[tuple[T, asyncio.Future[R], asyncio.AbstractEventLoop]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    async def submit(self, item: T) -> R:
        """Write, with the concurrent writes of this host, and return once committed; raises what the write raised,
        alone. In the host's intake process if there is one, here otherwise."""
        client = intake_client()
        if client is not None:
            try:
                return cast(R, await client.call(self.name, self._wire(item)))
            except IntakeUnavailable:
                pass  # written here instead: every write of this module may be done twice (intake_wire.py)
        return await self.write_here(item)

    async def write_here(self, item: T) -> R:
        """Queue one write for this process's writer thread and wait for it."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        with self._lock:
            self._queue.append((item, future, loop))
            self._ensure_thread()
        self._wake.set()
        return await future

    def _ensure_thread(self) -> None:
        """A writer for what is queued (the caller holds the lock)."""
        if self._queue and (self._thread is None or not self._thread.is_alive()):
            self._thread = threading.Thread(target=self._run, name=f"intake-{self.name}", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            while True:
                with self._lock:
                    group, self._queue = self._queue[:MAX_GROUP], self._queue[MAX_GROUP:]
                if not group:
                    break
                try:
                    results = self._results(group)
                except BaseException as exc:  # the thread itself is going down: nobody may be left waiting
                    with self._lock:
                        self._thread = None
                        self._ensure_thread()  # for what was queued behind this group
                    self._settle(group, [exc] * len(group))
                    raise
                done = [result for result in results if not isinstance(result, BaseException)]
                # Without a broker (the embedded mode) enqueuing an email is sending it, here and now: then the
                # answer comes after the email has gone, as a request alone would have it.
                then, eager = self._then, bool(celery_app.conf.task_always_eager)
                if then is not None and eager:
                    self._follow_up(then, done)
                self._settle(group, results)
                if then is not None and not eager:
                    self._follow_up(then, done)

    def _follow_up(self, then: Callable[[list[R]], None], results: list[R]) -> None:
        try:
            then(results)
        except Exception:  # committed and answered already: never write the group again
            log.exception("%s: what follows a group failed", self.name)

    def _results(self, group: list[tuple[T, asyncio.Future[R], asyncio.AbstractEventLoop]]) -> list[R | BaseException]:
        items = [item for item, _, _ in group]
        try:
            return list(self._write(items))
        except Exception as exc:  # each is retried alone; a lone failure is its answer
            if len(items) == 1:
                log.exception("%s: a write failed", self.name)
                return [exc]
            log.warning("%s: a group of %s writes failed (%r); writing each alone", self.name, len(items), exc)
        results: list[R | BaseException] = []
        for item in items:
            try:
                results.append(self._write([item])[0])
            except Exception as exc:
                log.exception("%s: a write failed", self.name)
                results.append(exc)
        return results

    @staticmethod
    def _settle(group: list[tuple[T, asyncio.Future[R], asyncio.AbstractEventLoop]],
                results: list[R | BaseException]) -> None:
        """Hand each result to its request: one wake-up per event loop for the whole group."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[R], R | BaseException]]] = defaultdict(list)
        for (_, future, loop), result in zip(group, results, strict=True):
            by_loop[loop].append((future, result))
        for loop, answers in by_loop.items():
            with suppress(RuntimeError):  # that loop has closed (a server shutting down): nobody is waiting now
                loop.call_soon_threadsafe(_answer, answers)


def _answer(answers: list[tuple[asyncio.Future[Any], Any]]) -> None:
    for future, result in answers:
        if future.done():  # the request was cancelled; the write stands
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)


def _send_emails(results: Sequence[SignUpAnswer | ConfirmResult]) -> None:
    """The confirmation and welcome emails of a group already committed and answered (one task per kind). A broker
    that is away loses them with a logged error, and the sign-up stands: the person can ask again once the
    two-minute guard of a repeated sign-up has passed (service.REQUEST_AGAIN_AFTER)."""
    notify_now(item for result in results for item in result.notify)


_client: IntakeClient | None = None


def intake_client() -> IntakeClient | None:
    """The connection to the host's intake process, when this web process was started with one."""
    global _client
    path = get_settings().intake_socket
    if not path:
        return None
    if _client is None or _client.path != path:
        _client = IntakeClient(path)
    return _client


def _committed(write: Callable[[Session, Sequence[T]], list[R]], items: Sequence[T]) -> list[R]:
    with session_scope() as session:  # commits before returning
        return write(session, items)


# Sign-ups ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SignUpRequest:
    """A form post: the rate limits it counts against (key, limit; in the sign-up window of the settings), and the
    sign-up if the address was valid."""

    limits: tuple[tuple[str, int], ...]
    signup: SignUp | None


@dataclass(frozen=True)
class WireSignUp:
    """A SignUpRequest on its way to the intake process: the list by its id (see signup_from_wire)."""

    limits: tuple[tuple[str, int], ...]
    list_id: int | None
    email: str = ""
    name: str = ""
    ip: str | None = None
    user_agent: str | None = None
    consent_note: str = ""


def _signup_to_wire(request: SignUpRequest) -> WireSignUp:
    signup = request.signup
    if signup is None:
        return WireSignUp(request.limits, None)
    return WireSignUp(request.limits, signup.mailing_list.id, signup.email, signup.name, signup.ip,
                      signup.user_agent, signup.consent_note)


def signup_from_wire(wire: WireSignUp, mailing_list: MailingList | None) -> SignUpRequest:
    """The request again, with its list as the intake process read it (None: it was deleted meanwhile, and only
    the limits are counted)."""
    if wire.list_id is None or mailing_list is None:
        return SignUpRequest(wire.limits, None)
    return SignUpRequest(wire.limits, SignUp(mailing_list, wire.email, wire.name, wire.ip, wire.user_agent,
                                             wire.consent_note))


@dataclass(frozen=True)
class SignUpAnswer:
    within_limits: bool
    result: SignedUp | None = None

    @property
    def notify(self) -> tuple[Notify, ...]:
        return self.result.notify if self.result is not None else ()


def _signups(requests: Sequence[SignUpRequest]) -> list[SignUpAnswer]:
    """Count every request's limits (one Redis round trip), then subscribe those within them (one transaction).
    Their emails are enqueued once they are answered (`_send_emails`)."""
    allowed = limiter().hit_many([request.limits for request in requests], get_settings().subscribe_rate_window_s)
    wanted = [(n, request.signup) for n, request in enumerate(requests) if allowed[n] and request.signup is not None]
    done = _committed(signup_many, [signup for _, signup in wanted]) if wanted else []
    answers = [SignUpAnswer(ok) for ok in allowed]
    for (n, _), result in zip(wanted, done, strict=True):
        answers[n] = SignUpAnswer(True, result)
    return answers


# Confirmations --------------------------------------------------------------------------------------------------

def _confirmations(requests: Sequence[Confirmation]) -> list[ConfirmResult]:
    return _committed(confirm_many, requests)


# Unsubscribes ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LeaveAnswer:
    changed: int
    in_flight: bool  # a batch holds them now: the request must await_handover before saying "done"


def _leaves(requests: Sequence[Leave]) -> list[LeaveAnswer]:
    changed = _committed(_form_leaves, requests)
    leaving = [leave.subscriber_id for leave, n in zip(requests, changed, strict=True) if n]
    try:
        holding = in_flight_among(leaving)
    except Exception:  # committed already: never write the group again; each request then waits on its own
        log.exception("reading which of %s unsubscribes a batch holds failed", len(leaving))
        holding = set(leaving)
    return [LeaveAnswer(n, bool(n) and leave.subscriber_id in holding)
            for leave, n in zip(requests, changed, strict=True)]


def _form_leaves(session: Session, leaves: Sequence[Leave]) -> list[int]:
    return unsubscribe_many(session, leaves, source=ConsentSource.FORM)


async def unsubscribe(subscriber_id: int, list_id: int | None, *, method: str, ip: str | None,
                      user_agent: str | None) -> None:
    """Leave one list (every list with None), with the concurrent unsubscribes, and return once that is durable and
    no batch in flight can still hand them the issue (then they are never told "done" and mailed after)."""
    answer = await LEAVES.submit(Leave(subscriber_id, list_id, ip, user_agent,
                                       {"method": method, "scope": "all" if list_id is None else "list"}))
    if answer.in_flight:
        await run_in_threadpool(await_handover, subscriber_id)


SIGNUPS: GroupWriter[SignUpRequest, SignUpAnswer] = GroupWriter("signups", _signups, then=_send_emails,
                                                                 wire=_signup_to_wire)
CONFIRMATIONS: GroupWriter[Confirmation, ConfirmResult] = GroupWriter("confirmations", _confirmations,
                                                                      then=_send_emails)
LEAVES: GroupWriter[Leave, LeaveAnswer] = GroupWriter("unsubscribes", _leaves)
