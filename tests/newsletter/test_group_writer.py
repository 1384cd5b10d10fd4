"""The group writer behind the public forms (newsletter/web/intake.py): concurrent writes are done together and each
request gets its own answer; a bad write fails alone; a request that goes away leaves its write done; requests from
several event loops (server threads, test clients) are all answered."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import TypeVar

import pytest

from newsletter.web.intake import MAX_GROUP, GroupWriter
from tests.support.aio import run_async as run

T = TypeVar("T")


class Recorder:
    """A write that holds its first group until released, so that what arrives meanwhile queues up."""

    def __init__(self) -> None:
        self.groups: list[list[str]] = []
        self.done: list[str] = []
        self.release = threading.Event()

    def __call__(self, items: Sequence[str]) -> list[str]:
        if not self.groups:
            assert self.release.wait(10)
        self.groups.append(list(items))
        if "bad" in items:
            raise ValueError(f"refused {len(items)}")  # the whole group's transaction is rolled back
        self.done.extend(items)
        return [f"done {item}" for item in items]




async def _queued_behind_first(writer: GroupWriter[str, str], recorder: Recorder,
                               items: list[str]) -> tuple[str, list[str | BaseException]]:
    first = asyncio.create_task(writer.submit("first"))
    await asyncio.sleep(0.1)  # the writer has taken it, and waits for the release
    rest = [asyncio.create_task(writer.submit(item)) for item in items]
    await asyncio.sleep(0.05)
    recorder.release.set()
    answers = await asyncio.gather(*rest, return_exceptions=True)
    return await first, list(answers)


def test_concurrent_writes_are_grouped_and_each_answered_in_order() -> None:
    recorder = Recorder()
    writer = GroupWriter("test", recorder)
    items = [f"r{n}" for n in range(MAX_GROUP + 50)]
    first, answers = run(_queued_behind_first(writer, recorder, items))
    assert first == "done first"
    assert answers == [f"done {item}" for item in items]
    assert recorder.groups[0] == ["first"]
    assert [len(group) for group in recorder.groups[1:]] == [MAX_GROUP, 50]  # bounded groups, in arrival order
    assert recorder.done == ["first", *items]


def test_a_bad_write_fails_alone_and_the_others_are_written_once() -> None:
    recorder = Recorder()
    writer = GroupWriter("test", recorder)
    items = ["a", "bad", "b", "c"]
    _, answers = run(_queued_behind_first(writer, recorder, items))
    assert answers[0] == "done a" and answers[2:] == ["done b", "done c"]
    assert isinstance(answers[1], ValueError) and str(answers[1]) == "refused 1"
    assert sorted(recorder.done) == ["a", "b", "c", "first"]  # the failed group wrote nothing; each alone once


def test_a_request_that_goes_away_leaves_its_write_done_and_the_writer_working() -> None:
    recorder = Recorder()
    writer = GroupWriter("test", recorder)

    async def scenario() -> str:
        gone = asyncio.create_task(writer.submit("first"))
        await asyncio.sleep(0.05)
        gone.cancel()  # the client hung up while its write was in the writer's hands
        recorder.release.set()
        with pytest.raises(asyncio.CancelledError):
            await gone
        return await asyncio.wait_for(writer.submit("next"), 5)

    assert run(scenario()) == "done next"
    assert recorder.done == ["first", "next"]


def test_requests_from_several_event_loops_are_all_answered() -> None:
    recorder = Recorder()
    recorder.release.set()
    writer = GroupWriter("test", recorder)
    answers: dict[int, list[str]] = {}

    def loop_thread(number: int) -> None:
        async def many() -> list[str]:
            return list(await asyncio.gather(*(writer.submit(f"{number}-{n}") for n in range(30))))
        answers[number] = asyncio.run(many())

    threads = [threading.Thread(target=loop_thread, args=(number,)) for number in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert answers == {number: [f"done {number}-{n}" for n in range(30)] for number in range(4)}
    assert sorted(recorder.done) == sorted(f"{number}-{n}" for number in range(4) for n in range(30))


class Fatal(BaseException):
    """What kills a thread outright (as SystemExit would), past the writer's `except Exception`."""


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the thread dies of it, as meant
def test_a_writer_thread_that_dies_answers_its_group_and_a_new_one_takes_over() -> None:
    calls: list[list[str]] = []
    doomed: list[threading.Thread] = []

    def write(items: Sequence[str]) -> list[str]:
        calls.append(list(items))
        if len(calls) == 1:
            doomed.append(threading.current_thread())
            raise Fatal
        return [f"done {item}" for item in items]

    writer = GroupWriter("test", write)

    async def scenario() -> tuple[BaseException | str, str]:
        try:
            first: BaseException | str = await asyncio.wait_for(writer.submit("doomed"), 5)
        except Fatal as exc:
            first = exc
        return first, await asyncio.wait_for(writer.submit("after"), 5)

    first, after = run(scenario())
    doomed[0].join(5)  # its death is reported within this test
    assert isinstance(first, Fatal)  # answered with what killed the thread, not left waiting
    assert after == "done after" and not doomed[0].is_alive()
