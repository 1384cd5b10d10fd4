"""CSV imports started from the admin run in a background thread so the page can show progress.

The importer commits chunk by chunk and resumes a file it has seen, so a web process that dies mid-import loses
nothing: uploading the same file again carries on. Progress lives in this process only; the page says so when it
is asked about an import that another process runs.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path

from mailer.db import new_session
from subscribers import importer, service


@dataclass
class ImportProgress:
    list_slug: str
    bytes_done: int = 0
    bytes_total: int = 1
    result: importer.ImportResult | None = None
    error: str = ""
    done: threading.Event = field(default_factory=threading.Event)


_running: dict[str, ImportProgress] = {}
_lock = threading.Lock()


def start(path: Path, list_slug: str, *, confirmed: bool, consent_source: str, welcome: bool = False) -> str:
    """Start importing `path`; returns the key to ask `progress` about."""
    key = secrets.token_urlsafe(12)
    state = ImportProgress(list_slug=list_slug, bytes_total=max(1, path.stat().st_size))

    def report(done: int, total: int) -> None:
        state.bytes_done, state.bytes_total = done, max(1, total)

    def run() -> None:
        try:
            state.result = importer.import_csv(new_session, path, list_slug, confirmed=confirmed,
                                               consent_source=consent_source, progress=report,
                                               welcome=welcome)
            state.bytes_done = state.bytes_total
        except (importer.ImportFileError, service.ServiceError, service.InvalidEmail, UnicodeDecodeError) as exc:
            state.error = str(exc)
        except Exception as exc:  # shown to the admin: the thread must not die silently
            state.error = f"The import stopped: {exc.__class__.__name__}: {exc}. Upload the same file to resume."
        finally:
            state.done.set()

    with _lock:
        if len(_running) > 200:  # forget old finished imports
            for old in [k for k, v in _running.items() if v.done.is_set()][:100]:
                _running.pop(old, None)
        _running[key] = state
    threading.Thread(target=run, name=f"import-{key}", daemon=True).start()
    return key


def progress(key: str) -> ImportProgress | None:
    return _running.get(key)
