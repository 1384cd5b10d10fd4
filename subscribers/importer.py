"""CSV import and export of a list, streaming, with a row-level error report and a resumable checkpoint.

Memory stays flat: the file is read row by row and written in chunks. Each chunk (subscribers, subscriptions,
consent events, report lines and the checkpoint) commits in one transaction, so a crash leaves whole chunks only,
and a rerun of the same file on the same list resumes after the last committed chunk.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sqlalchemy import String, any_, bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from mailer.db import email_hash, utcnow
from subscribers.models import (
    ConsentEvent,
    ConsentKind,
    ConsentSource,
    ImportJob,
    MailingList,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    Suppression,
)
from subscribers.service import InvalidEmail, ServiceError, normalise_email

CHUNK_ROWS = 5000
REPORT_HEADER = ["line", "email", "reason"]


class ImportFileError(ValueError):
    """The file as a whole cannot be imported (no header, no email column)."""


@dataclass
class ImportResult:
    job_id: int
    imported: int
    skipped: int
    errors: int
    lines: int
    report_path: Path
    resumed_from_line: int


@dataclass
class _Row:
    line: int
    email: str
    name: str
    attributes: dict[str, str]


def _default_report(path: Path) -> Path:
    """Reports go to the data dir, never next to the input (which may be read-only or under version control)."""
    from mailer.settings import get_settings

    folder = get_settings().data_dir / "imports"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{path.stem}-{file_sha256(path)[:8]}.import-errors.csv"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _LineReader:
    """Feeds csv.reader decoded lines while counting the bytes consumed, for the resume checkpoint.

    Bytes that are not UTF-8 are kept as surrogates so the row can be reported instead of crashing the import.
    """

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.offset = handle.tell()
        self.line = 0

    def __iter__(self) -> Iterator[str]:
        for raw in self.handle:
            self.offset += len(raw)
            self.line += 1
            yield raw.decode("utf-8", errors="surrogateescape")


_SURROGATE = re.compile("[\udc80-\udcff]")


def _has_bad_bytes(values: list[str]) -> bool:
    return _SURROGATE.search("".join(values)) is not None


def _insert(session: Session) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def import_csv(session_factory: Callable[[], Session], path: Path, list_slug: str, *, confirmed: bool = False,
               consent_source: str = "", report_path: Path | None = None,
               progress: Callable[[int, int], None] | None = None) -> ImportResult:
    """Import `path` into a list. `progress(bytes_done, bytes_total)` is called after each chunk."""
    if confirmed and not consent_source.strip():
        raise ServiceError("--confirmed needs --consent-source: say where and when these people agreed.")
    total = path.stat().st_size
    digest = file_sha256(path)
    with session_factory() as session:
        mailing_list = session.scalar(select(MailingList).where(MailingList.slug == list_slug))
        if mailing_list is None:
            raise ServiceError(f"No list called '{list_slug}'.")
        list_id, direct = mailing_list.id, confirmed or not mailing_list.double_opt_in
        job = session.scalar(select(ImportJob).where(ImportJob.list_id == list_id, ImportJob.file_sha256 == digest,
                                                     ImportJob.status == "running"))
        if job is None:
            report = report_path or _default_report(path)
            job = ImportJob(list_id=list_id, filename=str(path), file_sha256=digest, confirmed=confirmed,
                            consent_source=consent_source, report_path=str(report))
            session.add(job)
            session.commit()
        job_id, resume_offset, resume_line = job.id, job.byte_offset, job.line_no
        report = Path(job.report_path or _default_report(path))
    if resume_offset == 0:
        with report.open("w", newline="") as out:
            csv.writer(out).writerow(REPORT_HEADER)

    with path.open("rb") as handle:
        header_reader = _LineReader(handle)
        header = next(csv.reader(header_reader), None)
        if not header:
            raise ImportFileError(f"{path}: empty file, expected a header line with an 'email' column")
        columns = [c.strip().lstrip("\ufeff").lower() for c in header]
        if "email" not in columns:
            raise ImportFileError(f"{path}:1: no 'email' column in the header ({', '.join(columns)})")
        email_index = columns.index("email")
        name_index = columns.index("name") if "name" in columns else None
        if resume_offset:
            handle.seek(resume_offset)
            reader_source = _LineReader(handle)
            reader_source.line = resume_line
        else:
            reader_source = header_reader
        rows = csv.reader(reader_source)
        chunk: list[_Row] = []
        problems: list[tuple[int, str, str]] = []
        while True:
            start_line = reader_source.line + 1
            try:
                values = next(rows)
            except StopIteration:
                break
            except csv.Error as exc:
                problems.append((start_line, "", f"unreadable CSV: {exc}"))
                continue
            if not values or not any(v.strip() for v in values):
                continue
            if _has_bad_bytes(values):
                problems.append((start_line, "", "not UTF-8 text (bad encoding)"))
            elif len(values) != len(columns):
                problems.append((start_line, values[email_index] if len(values) > email_index else "",
                                 f"expected {len(columns)} columns, found {len(values)}"))
            else:
                attributes = {columns[i]: v for i, v in enumerate(values)
                              if i not in (email_index, name_index) and columns[i] and v != ""}
                chunk.append(_Row(start_line, values[email_index],
                                  values[name_index].strip() if name_index is not None else "", attributes))
            if len(chunk) + len(problems) >= CHUNK_ROWS:
                _commit_chunk(session_factory, job_id, list_id, direct, consent_source, chunk, problems, report,
                              reader_source.offset, reader_source.line)
                chunk, problems = [], []
                if progress:
                    progress(reader_source.offset, total)
        _commit_chunk(session_factory, job_id, list_id, direct, consent_source, chunk, problems, report,
                      reader_source.offset, reader_source.line, finished=True)
        if progress:
            progress(total, total)
    with session_factory() as session:
        job = session.get(ImportJob, job_id)
        assert job is not None
        return ImportResult(job_id, job.imported, job.skipped, job.errors, job.line_no, report, resume_line)


def _commit_chunk(session_factory: Callable[[], Session], job_id: int, list_id: int, direct: bool,
                  consent_source: str, chunk: list[_Row], problems: list[tuple[int, str, str]], report: Path,
                  offset: int, line: int, finished: bool = False) -> None:
    with session_factory() as session:
        imported, skipped, merged = _write_rows(session, list_id, direct, consent_source, chunk, problems)
        job = session.get(ImportJob, job_id)
        assert job is not None
        job.byte_offset, job.line_no = offset, line
        job.imported += imported
        job.skipped += skipped
        job.errors += len(problems) - merged - skipped
        if finished:
            job.status, job.finished_at = "done", utcnow()
        # The report lines are written before the commit: a crash between the two repeats a few report lines on
        # resume, never loses one.
        with report.open("a", newline="") as out:
            writer = csv.writer(out)
            for problem in sorted(problems):
                writer.writerow([problem[0], problem[1].encode("utf-8", "replace").decode(), problem[2]])
        session.commit()


def _write_rows(session: Session, list_id: int, direct: bool, consent_source: str, chunk: list[_Row],
                problems: list[tuple[int, str, str]]) -> tuple[int, int, int]:
    """Returns (new subscriptions, skipped rows, merged duplicates reported as info)."""
    valid: dict[str, _Row] = {}
    merged = 0
    for row in chunk:
        try:
            address = normalise_email(row.email, check_deliverability=False)
        except InvalidEmail as exc:
            problems.append((row.line, row.email, f"invalid address: {exc}"))
            continue
        if address in valid:  # duplicates inside the file are merged: later name/attributes win
            first = valid[address]
            valid[address] = _Row(first.line, address, row.name or first.name, first.attributes | row.attributes)
            problems.append((row.line, row.email, f"duplicate of line {first.line}, merged"))
            merged += 1
            continue
        valid[address] = _Row(row.line, address, row.name, row.attributes)
    if not valid:
        return 0, 0, merged
    hashes = {email_hash(a): a for a in valid}
    if session.get_bind().dialect.name == "postgresql":
        # One array parameter instead of 5,000 bind parameters (which psycopg would have to parse every time).
        array = bindparam("hashes", list(hashes), type_=postgresql.ARRAY(String(64)))
        suppressed = set(session.scalars(select(Suppression.email_hash).where(Suppression.email_hash == any_(array))))
    else:
        suppressed = set(session.scalars(select(Suppression.email_hash)
                                         .where(Suppression.email_hash.in_(list(hashes)))))
    skipped = 0
    for digest in suppressed:
        address = hashes[digest]
        problems.append((valid[address].line, address, "suppressed address, skipped"))
        del valid[address]
        skipped += 1
    if not valid:
        return 0, skipped, merged
    now = utcnow()
    if session.get_bind().dialect.name == "postgresql":
        ids, new_ids = _upsert_postgresql(session, list_id, direct, valid, now)
    else:
        ids, new_ids = _upsert_generic(session, list_id, direct, valid, now)
    for address, subscriber_id in ids.items():
        if subscriber_id not in new_ids:
            # Existing subscriptions are left alone: above all, people who unsubscribed stay unsubscribed.
            problems.append((valid[address].line, address, "already on the list, left unchanged"))
            skipped += 1
    if new_ids:
        detail = {"consent_source": consent_source, "double_opt_in": not direct}
        # One event per imported subscription: "imported", with whether it arrived confirmed and on what consent.
        detail["confirmed"] = direct
        kinds = [ConsentKind.IMPORTED]
        if session.get_bind().dialect.name == "postgresql":
            _consent_postgresql(session, list_id, kinds, sorted(new_ids), detail, now)
        else:
            session.connection().execute(ConsentEvent.__table__.insert(), [
                {"subscriber_id": i, "list_id": list_id, "kind": kind.value, "source": ConsentSource.IMPORT.value,
                 "at": now, "detail": detail} for kind in kinds for i in new_ids])
    return len(new_ids), skipped, merged


def _upsert_generic(session: Session, list_id: int, direct: bool, valid: dict[str, _Row],
                    now: Any) -> tuple[dict[str, int], set[int]]:
    """Any database with INSERT .. ON CONFLICT .. RETURNING (SQLite): executemany of one cached statement."""
    insert = _insert(session)
    connection = session.connection()
    subscribers_table, subscriptions_table = Subscriber.__table__, Subscription.__table__
    upsert = insert(subscribers_table)
    upsert = upsert.on_conflict_do_update(
        index_elements=["email"],
        set_={"name": func.coalesce(func.nullif(upsert.excluded.name, ""), subscribers_table.c.name)},
    ).returning(subscribers_table.c.id, subscribers_table.c.email)
    ids = {email: subscriber_id for subscriber_id, email in connection.execute(upsert, [
        {"email": a, "name": r.name[:200], "attributes": r.attributes, "created_at": now}
        for a, r in valid.items()])}
    status = (SubscriptionStatus.CONFIRMED if direct else SubscriptionStatus.PENDING).value
    statement = (insert(subscriptions_table).on_conflict_do_nothing(index_elements=["subscriber_id", "list_id"])
                 .returning(subscriptions_table.c.subscriber_id))
    new_ids = set(connection.execute(statement, [
        {"subscriber_id": ids[a], "list_id": list_id, "status": status, "source": "import", "created_at": now,
         "confirmed_at": now if direct else None} for a in valid]).scalars())
    return ids, new_ids


def _upsert_postgresql(session: Session, list_id: int, direct: bool, valid: dict[str, _Row],
                       now: Any) -> tuple[dict[str, int], set[int]]:
    """PostgreSQL: COPY the chunk into a temporary table, then two set-based statements. Several times faster than
    any parameterised INSERT, because the rows cross the wire in one stream and are parsed once."""
    raw = session.connection().connection.driver_connection
    assert raw is not None
    with raw.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE IF NOT EXISTS import_rows (email text, name text, attributes json) "
                       "ON COMMIT DELETE ROWS")
        with cursor.copy("COPY import_rows (email, name, attributes) FROM STDIN") as copy:
            for address, row in valid.items():
                copy.write_row((address, row.name[:200], json.dumps(row.attributes)))
        cursor.execute(
            "INSERT INTO subscribers (email, name, attributes, created_at) "
            "SELECT email, name, attributes, %s FROM import_rows "
            "ON CONFLICT (email) DO UPDATE SET name = COALESCE(NULLIF(EXCLUDED.name, ''), subscribers.name) "
            "RETURNING id, email", (now,))
        ids = {email: subscriber_id for subscriber_id, email in cursor.fetchall()}
        status = (SubscriptionStatus.CONFIRMED if direct else SubscriptionStatus.PENDING).value
        # The ids just returned, passed as one array: joining the temp table back to subscribers would let the
        # planner (no statistics on a temp table) scan the whole subscribers table for every chunk.
        cursor.execute(
            "INSERT INTO subscriptions (subscriber_id, list_id, status, source, created_at, confirmed_at) "
            "SELECT unnest(%s::bigint[]), %s, %s, 'import', %s, %s "
            "ON CONFLICT (subscriber_id, list_id) DO NOTHING RETURNING subscriber_id",
            (list(ids.values()), list_id, status, now, now if direct else None))
        new_ids = {row[0] for row in cursor.fetchall()}
        cursor.execute("DELETE FROM import_rows")
    return ids, new_ids


def _consent_postgresql(session: Session, list_id: int, kinds: list[ConsentKind], ids: list[int],
                        detail: dict[str, Any], now: Any) -> None:
    raw = session.connection().connection.driver_connection
    assert raw is not None
    with raw.cursor() as cursor:
        for kind in kinds:
            cursor.execute(
                "INSERT INTO consent_events (subscriber_id, list_id, kind, source, at, detail) "
                "SELECT unnest(%s::bigint[]), %s, %s, %s, %s, %s::json",
                (ids, list_id, kind.value, ConsentSource.IMPORT.value, now, json.dumps(detail)))


def export_csv(session: Session, list_slug: str, out: IO[str], *, status: SubscriptionStatus | None = None) -> int:
    """Stream a list's subscribers as CSV (email, name, status, dates, attributes as extra columns)."""
    mailing_list = session.scalar(select(MailingList).where(MailingList.slug == list_slug))
    if mailing_list is None:
        raise ServiceError(f"No list called '{list_slug}'.")
    query = (select(Subscriber.email, Subscriber.name, Subscription.status, Subscription.created_at,
                    Subscription.confirmed_at, Subscriber.attributes)
             .join(Subscription, Subscription.subscriber_id == Subscriber.id)
             .where(Subscription.list_id == mailing_list.id, Subscriber.erased_at.is_(None))
             .order_by(Subscriber.id).execution_options(yield_per=2000))
    if status is not None:
        query = query.where(Subscription.status == status)
    writer = csv.writer(out)
    writer.writerow(["email", "name", "status", "subscribed_at", "confirmed_at", "attributes"])
    count = 0
    for email, name, row_status, created, confirmed_at, attributes in session.execute(query):
        writer.writerow([email, name, SubscriptionStatus(row_status).value, created.isoformat(),
                         confirmed_at.isoformat() if confirmed_at else "",
                         ";".join(f"{k}={v}" for k, v in (attributes or {}).items())])
        count += 1
    return count


def read_report(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(io.StringIO(handle.read())))
