"""The garbage collector's schedule in bulk work (mailer/collector.py): paused for a batch, and no garbage kept.

A send worker runs each batch with the collector paused; these check that the pause holds, ends, nests, survives an
exception, and still reclaims the cycles a batch leaves behind, and that the task really runs its batch that way.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from mailer import collector
from mailer.db import session_scope
from tests.support.audience import make_audience, started_send
from worker import campaigns, tasks


class _Node:
    """A reference cycle: only the cyclic collector can free it."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def _collector_enabled() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_paused_block_runs_without_collection_and_restores_it() -> None:
    collections: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    gc.callbacks.append(count)
    try:
        with collector.paused():
            assert not gc.isenabled()
            kept = [[index] for index in range(50_000)]  # far past the young generation's threshold of 700
            assert collections == []
        assert gc.isenabled()
        assert collections == [0]  # the one young collection at the end, nothing older
    finally:
        gc.callbacks.remove(count)
    assert len(kept) == 50_000


def test_cycles_left_by_a_paused_block_are_reclaimed_when_it_ends() -> None:
    with collector.paused():
        node = _Node()
        ref = weakref.ref(node)
        del node
        assert ref() is not None  # reference counting alone cannot free a cycle, and no collection ran
    assert ref() is None


def test_an_exception_still_restores_the_collector() -> None:
    with pytest.raises(RuntimeError), collector.paused():
        raise RuntimeError("the provider went away")
    assert gc.isenabled()


def test_nested_and_already_disabled_blocks_leave_the_collector_as_found() -> None:
    with collector.paused():
        with collector.paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner block does not turn it back on under the outer one
    assert gc.isenabled()
    gc.disable()
    with collector.paused():
        pass
    assert not gc.isenabled()  # someone else's choice, kept


def test_freeze_loaded_moves_survivors_out_of_the_collectors_sight() -> None:
    gc.unfreeze()
    try:
        collector.freeze_loaded()
        assert gc.get_freeze_count() > 1000  # at least the modules this test process has loaded
        assert gc.get_count()[2] == 0
    finally:
        gc.unfreeze()


def test_the_send_task_runs_its_batch_with_the_collector_paused(db_url: str, settings, monkeypatch) -> None:
    audience = make_audience(3)
    with session_scope() as session:
        send_id = started_send(session, audience.issue_id, audience.list_id)
    with session_scope() as session:
        campaigns.plan_send(session, send_id)
    with session_scope() as session:
        (first, last), = campaigns.pending_ranges(session, send_id)
    seen: list[bool] = []
    real = campaigns.send_batch

    def watched(*args, **kwargs):
        seen.append(gc.isenabled())
        return real(*args, **kwargs)

    monkeypatch.setattr(campaigns, "send_batch", watched)
    assert tasks.send_batch.run(send_id, first, last)["sent"] == 3
    assert seen == [False] and gc.isenabled()
