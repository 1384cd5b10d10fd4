"""When the cyclic garbage collector runs, in the processes that do the bulk work.

CPython frees almost everything by reference counting; the cyclic collector only finds cycles, but it decides when
to look by counting allocations, and a batch of 1,000 recipients allocates tens of thousands of containers (each
recipient's values, the request's personalizations) that live until the batch ends. So during a batch the collector
ran every few hundred allocations, promoted the batch's live objects generation by generation, and every few
batches walked the whole heap. In a million-recipient send, each of two workers spent 8-9 s of CPU in the
collector (a `gc.callbacks` probe; 0.35 s with what follows). What a batch allocates is freed by reference
counting when the batch ends: the collector had nothing to find there.

- `freeze_loaded()`: once a process has loaded what it keeps for its life (modules, the app, compiled templates),
  move those objects out of the collector's sight, so that a full collection no longer walks them.
- `paused()`: no automatic collection inside one unit of bulk work; one young-generation collection after it
  reclaims whatever cycles the unit left (everything the unit allocated is still in the young generation, as no
  collection ran), so garbage stays bounded by one unit, as before.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


def freeze_loaded() -> None:
    """Collect once, then freeze what survives: it lives as long as the process (CPython's `gc.freeze`)."""
    gc.collect()
    gc.freeze()


@contextmanager
def paused() -> Iterator[None]:
    """No automatic collection until the block ends, then one collection of the youngest generation.

    Nested or already-disabled: leaves the collector as it found it (the outermost block collects)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect(0)
