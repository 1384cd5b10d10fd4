"""CSV import and export of a list, streaming, with a row-level error report and a resumable checkpoint.

Memory stays flat: the file is read row by row and written in chunks. Each chunk (subscribers, subscriptions,
consent events, report lines and the checkpoint) commits in one transaction, so a crash leaves whole chunks only,
and a rerun of the same file on the same list resumes after the last committed chunk.
"""

from __future__ import annotations

import csv
import hashlib
import io
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mailer.db import GIL_HANDOVER_S, utcnow
from mailer.settings import get_settings
from subscribers import csvsafe, fields, import_writes
from subscribers.import_writes import Row
from subscribers.models import (
    ImportJob,
    ImportStatus,
    MailingList,
    Subscriber,
    Subscription,
    SubscriptionStatus,
)
from subscribers.service import InvalidEmail, ServiceError, check_local_part, normalise_email

CHUNK_ROWS = 10_000  # a transaction each; twice 5,000 made imports ~9% faster (fewer round trips and commits)
ANALYZE_AFTER_ROWS = 10_000
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


def _default_report(path: Path) -> Path:
    """Reports go to the data dir, never next to the input (which may be read-only or under version control)."""
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

    Bytes that are not UTF-8 are kept as surrogates so the row can be reported instead of crashing the import;
    `bad_lines` counts such lines, so a row needs a closer look only when the count moved while reading it;
    `nul_lines` the same for lines holding a NUL byte, which no database text can hold.
    """

    def __init__(self, handle: IO[bytes], line: int = 0) -> None:
        self.handle = handle
        self.offset = handle.tell()
        self.line = line
        self.bad_lines = 0
        self.nul_lines = 0

    def __iter__(self) -> Iterator[str]:
        for raw in self.handle:
            self.offset += len(raw)
            self.line += 1
            if b"\x00" in raw:
                self.nul_lines += 1
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                self.bad_lines += 1
                text = raw.decode("utf-8", errors="surrogateescape")
            yield text


def import_csv(session_factory: Callable[[], Session], path: Path, list_slug: str, *, confirmed: bool = False,
               consent_source: str = "", report_path: Path | None = None,
               progress: Callable[[int, int], None] | None = None, welcome: bool = False) -> ImportResult:
    """Import `path` into a list. `progress(bytes_done, bytes_total)` is called after each committed chunk.

    `welcome`: the list's welcome series mails the new subscriptions once confirmed (off by default: an import
    must not mail a whole list out of the blue). A resumed import takes the option given to the new run.

    Reading and validating the next chunk overlaps the database writing the previous one, so Python and the
    database each keep a core busy. There is a single writer, so chunks commit in file order and the checkpoint
    always marks a prefix of the file. On PostgreSQL the reader also encodes each chunk for COPY, so that the
    writer thread holds the interpreter lock as little as possible: its time is the database's.
    """
    if confirmed and not consent_source.strip():
        raise ServiceError("--confirmed needs --consent-source: say where and when these people agreed.")
    if not path.is_file():
        raise ImportFileError(f"{path}: not a file{' (it is a directory)' if path.is_dir() else ''}; "
                              "give the path of the CSV file itself")
    total = path.stat().st_size
    digest = file_sha256(path)
    with session_factory() as session:
        mailing_list = session.scalar(select(MailingList).where(MailingList.slug == list_slug))
        if mailing_list is None:
            raise ServiceError(f"No list called '{list_slug}'.")
        list_id, direct = mailing_list.id, confirmed or not mailing_list.double_opt_in
        postgresql = session.get_bind().dialect.name == "postgresql"
        check = partial(check_local_part, allow_international=mailing_list.allow_international)
        job = session.scalar(select(ImportJob).where(ImportJob.list_id == list_id, ImportJob.file_sha256 == digest,
                                                     ImportJob.status == ImportStatus.RUNNING))
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
            csvsafe.writer(out).writerow(REPORT_HEADER)

    commit = partial(_commit_chunk, session_factory, job_id, list_id, direct, consent_source, report=report,
                     welcome=welcome)
    define = partial(_define_columns, session_factory, list_id, path)
    chunks = _read_chunks(path, resume_offset, resume_line, check, define)
    if postgresql:
        chunks = map(_with_copy_payload, chunks)
    try:
        with _quick_handover(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-writer") as writer:
            in_flight: tuple[Future[None], int] | None = None
            for chunk in chunks:
                if in_flight is not None:
                    _committed(in_flight, total, progress)
                in_flight = writer.submit(commit, chunk), chunk.offset
            if in_flight is not None:
                _committed(in_flight, total, progress)
    except ImportFileError:
        # The file itself cannot be imported: the job ends as failed. (Any other error leaves it running, so that
        # importing the same file again resumes after the last committed chunk.)
        with session_factory() as session:
            failed = session.get(ImportJob, job_id)
            assert failed is not None
            failed.status, failed.finished_at = ImportStatus.FAILED, utcnow()
            session.commit()
        raise
    with session_factory() as session:
        job = session.get(ImportJob, job_id)
        assert job is not None
        if job.imported >= ANALYZE_AFTER_ROWS and session.get_bind().dialect.name == "postgresql":
            # PostgreSQL's advice after a bulk load: a send planned right after a big import is then planned from
            # statistics that know the new rows, not from those of the much smaller table before.
            session.execute(text("ANALYZE subscribers, subscriptions"))
            session.commit()
        return ImportResult(job_id, job.imported, job.skipped, job.errors, job.line_no, report, resume_line)


_handover_lock = threading.Lock()
_handovers = [0, 0.0]  # imports running in this process, the interval to go back to


@contextmanager
def _quick_handover() -> Iterator[None]:
    """The writer thread makes about eight database round trips a chunk, and after each one it must wait for the
    reader, busy in Python, to hand over the interpreter lock (mailer.db.GIL_HANDOVER_S). The quicker handover
    makes the writer's time the database's; the interval is restored once the last import in the process ends (a
    web process has it already)."""
    with _handover_lock:
        if _handovers[0] == 0:
            _handovers[1] = sys.getswitchinterval()
            sys.setswitchinterval(min(_handovers[1], GIL_HANDOVER_S))
        _handovers[0] += 1
    try:
        yield
    finally:
        with _handover_lock:
            _handovers[0] -= 1
            if _handovers[0] == 0:
                sys.setswitchinterval(_handovers[1])


def _committed(in_flight: tuple[Future[None], int], total: int,
               progress: Callable[[int, int], None] | None) -> None:
    """Wait for the chunk being written (re-raising what stopped it), then report how far the file is in."""
    future, offset = in_flight
    future.result()
    if progress:
        progress(offset, total)


def _define_columns(session_factory: Callable[[], Session], list_id: int, path: Path,
                    columns: list[tuple[int, str]]) -> list[tuple[int, str, fields.Converter]]:
    """The list's field for each extra column (a column that names none becomes a text field), committed before
    the first row is read; two imports defining the same field at once: the second reads the first's."""
    for attempt in (1, 2):
        with session_factory() as session:
            mailing_list = session.get(MailingList, list_id)
            assert mailing_list is not None
            try:
                converters = fields.import_columns(session, mailing_list, columns)
                session.commit()
                return converters
            except ServiceError as exc:
                raise ImportFileError(f"{path}:1: {exc}") from exc
            except IntegrityError:
                session.rollback()
                if attempt == 2:
                    raise
    raise AssertionError("unreachable")


def _read_chunks(path: Path, resume_offset: int, resume_line: int, check: Callable[[str], None],
                 define: Callable[[list[tuple[int, str]]], list[tuple[int, str, fields.Converter]]]
                 ) -> Iterator[_Chunk]:
    """The file as validated chunks of about CHUNK_ROWS rows, from the checkpoint on; the last one is `finished`.

    Each extra column's values are converted to their field's type as the row is read; a row with a value that
    does not fit is reported and not imported at all (fix the file and import it again: the rows already imported
    are left as they are, so a row imported without its bad value could not be completed by a second import)."""
    with path.open("rb") as handle:
        header_reader = _LineReader(handle)
        try:
            header = next(csv.reader(header_reader), None)
        except csv.Error as exc:
            raise ImportFileError(f"{path}: not a UTF-8 text CSV file (the first line cannot be read as CSV: "
                                  f"{exc}); export it from the spreadsheet as CSV UTF-8") from exc
        if header_reader.bad_lines or header_reader.nul_lines:
            raise ImportFileError(f"{path}: not a UTF-8 text CSV file (the first line holds binary data); "
                                  "export it from the spreadsheet as CSV UTF-8")
        if not header:
            raise ImportFileError(f"{path}: empty file, expected a header line with an 'email' column")
        columns = [c.strip().lstrip("\ufeff").lower() for c in header]
        if "email" not in columns:
            raise ImportFileError(f"{path}:1: no 'email' column in the header ({', '.join(columns)})")
        email_index = columns.index("email")
        name_index = columns.index("name") if "name" in columns else None
        extra = define([(i, c) for i, c in enumerate(columns) if i not in (email_index, name_index) and c])
        if resume_offset:
            handle.seek(resume_offset)
            source = _LineReader(handle, line=resume_line)
        else:
            source = header_reader
        rows = csv.reader(source)
        chunk: list[Row] = []
        problems: list[tuple[int, str, str]] = []
        while True:
            start_line, bad_lines, nul_lines = source.line + 1, source.bad_lines, source.nul_lines
            try:
                values = next(rows)
            except StopIteration:
                break
            except csv.Error as exc:
                problems.append((start_line, "", f"unreadable CSV: {exc}"))
                continue
            if not values or not any(v.strip() for v in values):
                continue
            if source.bad_lines != bad_lines:
                problems.append((start_line, "", "not UTF-8 text (bad encoding)"))
            elif source.line > start_line and any("\n" in v or "\r" in v for v in values):
                problems.extend(_runaway_quote(start_line, source.line, values, email_index))
            elif len(values) != len(columns):
                problems.append((start_line, values[email_index] if len(values) > email_index else "",
                                 f"expected {len(columns)} columns, found {len(values)}"))
            elif source.nul_lines != nul_lines:
                # No database text can hold a NUL; a row with one is binary data, not a person.
                problems.append((start_line, values[email_index].replace("\x00", ""),
                                 "holds a NUL byte (binary data, not text); row not imported"))
            else:
                email = csvsafe.read_cell(values[email_index])
                try:
                    attributes = _typed(values, extra)
                except ServiceError as exc:
                    problems.append((start_line, email, f"{exc}; row not imported"))
                else:
                    chunk.append(Row(start_line, email, csvsafe.read_cell(values[name_index].strip())
                                     if name_index is not None else "", attributes))
            if len(chunk) + len(problems) >= CHUNK_ROWS:
                valid, merged = _prepare(chunk, problems, check)
                yield _Chunk(valid, problems, merged, source.offset, source.line)
                chunk, problems = [], []
        valid, merged = _prepare(chunk, problems, check)
        yield _Chunk(valid, problems, merged, source.offset, source.line, finished=True)


def _typed(values: list[str], extra: list[tuple[int, str, fields.Converter]]) -> dict[str, Any]:
    """A row's field values, typed (ServiceError names the first that does not fit); empty cells are left out."""
    attributes: dict[str, Any] = {}
    for index, key, convert in extra:
        raw = values[index]
        if raw:
            value = convert(csvsafe.read_cell(raw) if raw[0] == "'" else raw)
            if value is not None:
                attributes[key] = value
    return attributes


def _runaway_quote(first: int, last: int, values: list[str], email_index: int) -> list[tuple[int, str, str]]:
    """A quoted field that ran over line ends: almost always a quote that was never closed, which swallows the
    rows after it into one field. Nothing in it is imported and every swallowed line is reported by number, so
    the person can fix the quote and import the file again (rows already imported are left unchanged)."""
    reason = (f"a quoted field runs from line {first} to line {last} (a quote left open?): these lines were read "
              "as one field and not imported; close the quote (a field may not span lines) and import again")
    swallowed = next((v for v in values if "\n" in v or "\r" in v), "").splitlines()[1:]
    shown = [values[email_index] if len(values) > email_index else ""] + [line[:200] for line in swallowed]
    return [(line, shown[i] if i < len(shown) else "", reason) for i, line in enumerate(range(first, last + 1))]


def _prepare(chunk: list[Row], problems: list[tuple[int, str, str]],
             check: Callable[[str], None]) -> tuple[dict[str, Row], int]:
    """Validate and de-duplicate a chunk's rows (CPU only, so it runs while the previous chunk is being written).

    Returns the rows by normalised address and how many duplicates were merged into an earlier row.
    """
    valid: dict[str, Row] = {}
    merged = 0
    for row in chunk:
        try:
            address = normalise_email(row.email, check_deliverability=False)
            check(address)
        except InvalidEmail as exc:
            problems.append((row.line, row.email, f"invalid address: {exc}"))
            continue
        first = valid.get(address)
        if first is not None:  # duplicates inside the file are merged: later name/attributes win
            valid[address] = Row(first.line, address, row.name or first.name, first.attributes | row.attributes)
            problems.append((row.line, row.email, f"duplicate of line {first.line}, merged"))
            merged += 1
            continue
        valid[address] = Row(row.line, address, row.name, row.attributes)
    return valid, merged


@dataclass
class _Chunk:
    """One transaction's worth of the file: valid rows, the problems found so far, and where the file stands.

    `payload`: the rows as PostgreSQL COPY text (address, name, attributes, address hash), when the writer is
    PostgreSQL."""
    rows: dict[str, Row]
    problems: list[tuple[int, str, str]]
    merged: int
    offset: int
    line: int
    finished: bool = False
    payload: bytes | None = None


def _with_copy_payload(chunk: _Chunk) -> _Chunk:
    """Encode a chunk for COPY in the reader thread (see import_csv), so the writer thread mostly waits."""
    chunk.payload = import_writes.copy_text(chunk.rows)
    return chunk


def _commit_chunk(session_factory: Callable[[], Session], job_id: int, list_id: int, direct: bool,
                  consent_source: str, chunk: _Chunk, report: Path, welcome: bool = False) -> None:
    """Write a chunk's rows, report lines and checkpoint in one transaction."""
    with session_factory() as session:
        imported, skipped = _write_rows(session, list_id, direct, consent_source, chunk, welcome=welcome)
        job = session.get(ImportJob, job_id)
        assert job is not None
        job.byte_offset, job.line_no = chunk.offset, chunk.line
        job.imported += imported
        job.skipped += skipped
        job.errors += len(chunk.problems) - chunk.merged - skipped
        if chunk.finished:
            job.status, job.finished_at = ImportStatus.DONE, utcnow()
        # The report lines are written before the commit: a crash between the two repeats a few report lines on
        # resume, never loses one.
        with report.open("a", newline="") as out:
            writer = csvsafe.writer(out)
            for problem in sorted(chunk.problems):
                writer.writerow([problem[0], problem[1].encode("utf-8", "replace").decode(), problem[2]])
        session.commit()


def _write_rows(session: Session, list_id: int, direct: bool, consent_source: str, chunk: _Chunk, *,
                welcome: bool = False) -> tuple[int, int]:
    """Returns (new subscriptions, skipped rows); appends a report line to the chunk for every row skipped."""
    valid = chunk.rows
    if not valid:
        return 0, 0
    now = utcnow()
    # One "imported" event per new subscription, saying whether it arrived confirmed and on what consent.
    detail = {"consent_source": consent_source, "double_opt_in": not direct, "confirmed": direct}
    if chunk.payload is not None:
        outcome = import_writes.write_postgresql(session, list_id, direct, chunk.payload, detail, now, welcome)
    else:
        outcome = import_writes.write_generic(session, list_id, direct, valid, detail, now, welcome)
    new_count, suppressed, unchanged = outcome
    for address in suppressed:
        chunk.problems.append((valid[address].line, address, "suppressed address, skipped"))
    for address in unchanged:
        # Existing subscriptions are left alone: above all, people who unsubscribed stay unsubscribed.
        chunk.problems.append((valid[address].line, address, "already on the list, left unchanged"))
    return new_count, len(suppressed) + len(unchanged)


def export_csv(session: Session, list_slug: str, out: IO[str], *, status: SubscriptionStatus | None = None) -> int:
    """Stream a list's subscribers as CSV: email, name, status, dates, the list's fields in definition order (the
    default where a subscriber has no value), then any other attributes as one `key=value;...` column."""
    mailing_list = session.scalar(select(MailingList).where(MailingList.slug == list_slug))
    if mailing_list is None:
        raise ServiceError(f"No list called '{list_slug}'.")
    defined = [(field.name, field.default) for field in fields.fields_of(session, mailing_list.id)]
    names = {name for name, _default in defined}
    query = (select(Subscriber.email, Subscriber.name, Subscription.status, Subscription.created_at,
                    Subscription.confirmed_at, Subscriber.attributes)
             .join(Subscription, Subscription.subscriber_id == Subscriber.id)
             .where(Subscription.list_id == mailing_list.id, Subscriber.erased_at.is_(None))
             .order_by(Subscriber.id).execution_options(yield_per=2000))
    if status is not None:
        query = query.where(Subscription.status == status)
    writer = csvsafe.writer(out)
    writer.writerow(["email", "name", "status", "subscribed_at", "confirmed_at", *(name for name, _default in defined),
                     "attributes"])
    count = 0
    for email, name, row_status, created, confirmed_at, attributes in session.execute(query):
        values = attributes or {}
        writer.writerow([email, name, SubscriptionStatus(row_status).value, created.isoformat(),
                         confirmed_at.isoformat() if confirmed_at else "",
                         *(fields.display(values.get(key, default)) for key, default in defined),
                         ";".join(f"{k}={v}" for k, v in values.items() if k not in names)])
        count += 1
    return count


def read_report(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(io.StringIO(handle.read())))
