"""SIGTERM in a pool process waits until the batch in the provider's hands is recorded.

A prefork pool process exits on SIGTERM wherever it is (billiard's handler raises SystemExit), and a service manager
that stops the whole process group (systemd's default KillMode, `kill -TERM -PGID`) signals it along with the main
process: mid-batch, the provider has accepted the batch, the ledger has not recorded it, and it goes out again.
Inside `ambiguous_window()` the signal is only noted, and delivered again, to the handler that was in force, as
soon as the window closes. Outside a window, and in any process that did not `install()`, SIGTERM is untouched.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

log = logging.getLogger(__name__)
_enabled = False
_deferred = False


def _on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    global _deferred
    _deferred = True
    log.warning("SIGTERM: exiting once the batch the provider holds is recorded")


def install() -> None:
    """In a pool process (Celery's worker_process_init). The handler itself is swapped in per window: billiard
    installs its own SIGTERM handler after the initialiser runs, and that one stays in force outside windows."""
    global _enabled
    _enabled = True


@contextmanager
def ambiguous_window() -> Iterator[None]:
    """From handing a batch to the provider until its outcomes are recorded."""
    global _deferred
    if not _enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        if _deferred:
            _deferred = False
            os.kill(os.getpid(), signal.SIGTERM)  # now handled as it would have been
