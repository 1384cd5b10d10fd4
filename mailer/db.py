"""SQLAlchemy 2 engine, sessions and the declarative Base shared by every package's models.

The engine is cached per URL so that CLI commands, web requests and Celery tasks in one process share a pool.
SQLite gets WAL, foreign keys and a busy timeout, because the embedded default has a web server and inline tasks
writing to one file at once.
"""

from __future__ import annotations

import hashlib
import json
import select
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    CursorResult,
    Enum,
    Integer,
    MetaData,
    Result,
    Table,
    Text,
    any_,
    bindparam,
    create_engine,
    event,
    func,
    insert,
)
from sqlalchemy import select as sql_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from mailer.settings import create_private_file, get_settings, make_private_dir

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# A 64-bit key on PostgreSQL; SQLite only auto-increments a column declared exactly INTEGER.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


# How long a thread may hold the interpreter lock while another waits for it (CPython's default is 5 ms). A thread
# that writes to the database gives the lock up at every round trip and must then wait for it again: with the
# default, a thread computing beside it (a busy event loop, an import's reader) made each of those waits up to
# 5 ms, 40-70 ms for one sign-up group's eight round trips and a fifth of an import's time. Set for good by the
# web and intake processes (newsletter/web/app.py, intake_process.py), and while an import runs by the importer.
GIL_HANDOVER_S = 0.0005


def utcnow() -> datetime:
    return datetime.now(UTC)


def email_hash(normalised_email: str) -> str:
    """The stable fingerprint kept for suppressions, so an erased address can still be refused."""
    return hashlib.sha256(normalised_email.encode()).hexdigest()


def enum_column(enum: type[StrEnum], name: str) -> Enum:
    """Status values stored as short strings with a CHECK constraint: portable, readable in psql."""
    return Enum(enum, name=name, native_enum=False, create_constraint=True, length=32,
                values_callable=lambda e: [m.value for m in e])


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


_ENGINES: dict[str, Engine] = {}
_FACTORIES: dict[str, sessionmaker[Session]] = {}
# One engine (one pool) per process and URL, even when a burst of first requests reaches every thread of the web
# server's pool at once: without the lock each of them made its own engine, and 2 processes x 40 threads of pools
# ran PostgreSQL out of connections ("too many clients", bench/web.py).
_CREATING = threading.Lock()


def get_engine(url: str | None = None) -> Engine:
    url = url or default_url()
    engine = _ENGINES.get(url)
    if engine is None:
        with _CREATING:
            engine = _ENGINES.get(url)
            if engine is None:
                engine = _ENGINES[url] = _make_engine(url)
    return engine


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:" and not path.startswith("file:"):
            # Owner-only: the file holds every address and consent record. SQLite gives its -wal and -shm files
            # the database file's mode, so creating the file first (0600) covers them too.
            make_private_dir(Path(path).parent)
            create_private_file(Path(path))
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    # No pool_pre_ping: its SELECT 1 was a round trip on every checkout, a request's worth of waiting on a busy
    # server for each web request. _check_idle_connection finds the connections a restart closed without one, and
    # pool_recycle retires those a firewall or an idle timeout might cut without a word.
    # Ten kept, five more in a burst (each closed again when returned to a full pool): 15 at most per process, as
    # before, but a crowd on a web process's 40 threads no longer opens and closes a connection per request beyond
    # the fifth. Two web processes, workers and beat stay well under PostgreSQL's default max_connections of 100.
    engine = create_engine(url, pool_size=10, max_overflow=5, pool_recycle=RECYCLE_S)
    event.listen(engine, "checkout", _check_idle_connection)
    return engine


RECYCLE_S = 1800


def _check_idle_connection(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Refuse a pooled connection the server has closed, so the pool opens a fresh one in its place.

    A connection resting in the pool has nothing to read: the server speaks only when asked. If its socket is
    readable, the server has hung up (a restart or pg_terminate_backend sends its farewell and closes) or, rarely,
    sent a notice; either way a real ping decides. A live, quiet connection costs one poll(2) and no round trip.
    Raising DisconnectionError makes the pool discard the connection and connect again (SQLAlchemy's own protocol
    for checkout listeners).
    """
    if dbapi_connection.closed or dbapi_connection.broken:
        raise DisconnectionError("the connection was closed")
    poller = select.poll()
    poller.register(dbapi_connection.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
    if not poller.poll(0):
        return
    try:
        dbapi_connection.execute("SELECT 1")
        dbapi_connection.rollback()
    except Exception as exc:  # any failure of a ping on an idle connection means: do not use it
        raise DisconnectionError(f"the server closed the connection: {exc}") from exc


def dispose_engines() -> None:
    """Close pooled connections (after a fork, and between tests that switch databases)."""
    for engine in _ENGINES.values():
        engine.dispose()
    _ENGINES.clear()
    _FACTORIES.clear()


def _session_factory(url: str) -> sessionmaker[Session]:
    factory = _FACTORIES.get(url)
    if factory is None:
        engine = get_engine(url)
        with _CREATING:
            factory = _FACTORIES.get(url)
            if factory is None:
                factory = _FACTORIES[url] = sessionmaker(bind=engine, expire_on_commit=False)
    return factory


def default_url() -> str:
    url = get_settings().database_url
    assert url is not None
    return url


def new_session(url: str | None = None) -> Session:
    return _session_factory(url or default_url())()


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A unit of work: commit on success, roll back on any error, always close."""
    session = new_session(url)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def upsert_insert(session: Session) -> Any:
    """The INSERT construct of the session's database, the one that has `on_conflict_do_nothing` (both PostgreSQL's
    and SQLite's spell ON CONFLICT the same way; the generic insert has none)."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def insert_new(session: Session, table: Table, varying: Mapping[str, Sequence[Any]], fixed: Mapping[str, Any], *,
               conflict: Sequence[str], returning: Sequence[Any]) -> list[Any]:
    """INSERT .. ON CONFLICT (`conflict`) DO NOTHING RETURNING `returning`, of rows that differ only in the `varying`
    columns (a list of values per column, all of one length) and share the `fixed` ones; the rows made.

    On PostgreSQL: `INSERT .. SELECT FROM unnest(one array per varying column)`. Its text is the same for any number
    of rows, so the driver converts it once and only the varying values travel; a multi-row VALUES is new text for
    each size, and converting its placeholders costs tens of µs of Python a row (the public forms' group writers share
    the interpreter lock with the requests). Elsewhere: executemany."""
    names = list(varying)
    count = len(varying[names[0]]) if names else 0
    if count == 0:
        return []
    if session.get_bind().dialect.name != "postgresql":
        rows = [{**fixed, **{name: varying[name][n] for name in names}} for n in range(count)]
        return list(session.execute(sqlite.insert(table).on_conflict_do_nothing(index_elements=list(conflict))
                                    .returning(*returning), rows))
    statement = _unnest_insert(table, tuple(names), tuple(fixed), tuple(conflict), tuple(returning))
    parameters = {f"many_{name}": list(values) for name, values in varying.items()}
    parameters.update({f"one_{name}": value for name, value in fixed.items()})
    return list(session.execute(statement, parameters))


@lru_cache(maxsize=64)
def _unnest_insert(table: Table, varying: tuple[str, ...], fixed: tuple[str, ...], conflict: tuple[str, ...],
                   returning: tuple[Any, ...]) -> Any:
    """insert_new's statement on PostgreSQL, built once per shape: building it again for every group cost more
    Python than running it (~0.15 ms a statement; the writers' fixed cost per group is what a crowd pays for)."""
    selected: list[Any] = [func.unnest(bindparam(f"many_{name}", type_=ARRAY(
        BigInteger() if isinstance(table.c[name].type, (BigInteger, Integer)) else Text()))) for name in varying]
    selected += [bindparam(f"one_{name}", type_=table.c[name].type) for name in fixed]
    return (postgresql.insert(table).from_select([*varying, *fixed], sql_select(*selected))
            .on_conflict_do_nothing(index_elements=list(conflict)).returning(*returning))


def insert_many(session: Session, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain INSERT of many rows (nothing returned, no conflict expected), in the session's transaction.

    On PostgreSQL the rows are streamed with COPY: ~3 µs of Python a row, where a parameterised INSERT spends 20-50
    (the driver binds every value, and a multi-row statement is parsed again for every size). What writes this way
    shares its process, and the interpreter lock, with requests: the click writer, the public forms' group writers.
    JSON values are sent as their text, enumerations as their values. Elsewhere: executemany."""
    if not rows:
        return
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        session.execute(insert(table), [dict(zip(columns, row, strict=True)) for row in rows])
        return
    as_json = [isinstance(table.c[name].type, JSON) for name in columns]
    raw = connection.connection.driver_connection
    assert raw is not None  # a checked-out connection
    with raw.cursor() as cursor, cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([json.dumps(value) if is_json else value.value if isinstance(value, StrEnum) else value
                            for value, is_json in zip(row, as_json, strict=True)])


def id_in(column: Any, ids: Any, dialect: str) -> Any:
    """`column IN ids` as one array parameter on PostgreSQL: a thousand bind parameters would make the driver
    parse and the server plan a thousand-placeholder statement for every batch."""

    ids = list(ids)
    if dialect == "postgresql":
        return column == any_(bindparam(None, ids, type_=ARRAY(BigInteger())))
    return column.in_(ids)


def table_of(model: type[Base]) -> Table:
    """A model's Core table, for statements that bypass the ORM (SQLAlchemy types `__table__` as a FromClause)."""
    return cast(Table, model.__table__)


def rowcount(result: Result[Any]) -> int:
    """Rows a DML statement changed (Session.execute is typed as returning a plain Result, not a cursor's)."""
    return cast(CursorResult[Any], result).rowcount


def as_utc(moment: datetime) -> datetime:
    """SQLite hands datetimes back without their zone; every one we store is UTC, so compare them as such."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
