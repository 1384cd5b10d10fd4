"""Running a coroutine from a test, whatever the test before left behind."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_async(coroutine: Coroutine[Any, Any, T], timeout_s: float = 30) -> T:
    """asyncio.run in a thread of its own: a browser test's driver may have left a loop running in the test
    thread, where asyncio.run refuses to start. What the coroutine raises is raised here."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            outcome.append(asyncio.run(coroutine))
        except BaseException as exc:  # handed to the test thread
            failure.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(timeout_s)
    if failure:
        raise failure[0]
    assert outcome, "the coroutine did not finish"
    return outcome[0]
