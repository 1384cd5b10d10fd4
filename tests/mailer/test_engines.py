"""One engine, and so one connection pool, per process and database."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from mailer import db


def test_a_burst_of_first_requests_makes_one_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Forty threads asking for the engine at once (a web server's first burst) get the same one: a pool each
    would multiply the connections the database sees by the number of threads."""
    made: list[str] = []
    real = db._make_engine

    def slow_make(url: str) -> Engine:
        made.append(url)
        time.sleep(0.05)  # creating an engine takes a while: the window the other threads used to race into
        return real(url)

    monkeypatch.setattr(db, "_make_engine", slow_make)
    url = f"sqlite:///{tmp_path / 'burst.db'}"
    start = threading.Barrier(40)
    engines: list[Engine] = []
    sessions: list[object] = []

    def first_request() -> None:
        start.wait()
        engines.append(db.get_engine(url))
        sessions.append(db._session_factory(url))

    threads = [threading.Thread(target=first_request) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert made == [url] and len({id(e) for e in engines}) == 1 and len({id(s) for s in sessions}) == 1
    finally:
        db._ENGINES.pop(url).dispose()
        db._FACTORIES.pop(url, None)
