"""CSV import: bad rows reported by line and skipped, good rows kept, resumable, whole chunks only."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from mailer.db import GIL_HANDOVER_S, new_session, session_scope
from newsletter.cli import app
from subscribers import importer, mailing_lists, privacy, service
from subscribers.models import ConsentEvent, ConsentSource, Subscriber, Subscription, SubscriptionStatus
from subscribers.models import SuppressionReason as Reason


@pytest.fixture
def weekly(db_url: str) -> str:
    with session_scope() as session:
        mailing_lists.create_list(session, "weekly", "Weekly")
    return db_url


def count(model: type) -> int:
    with session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_broken_rows_reported_by_line(weekly: str, tmp_path: Path) -> None:
    with session_scope() as session:
        service.suppress(session, "blocked@example.com", Reason.HARD_BOUNCE, source=ConsentSource.ADMIN)
    path = tmp_path / "people.csv"
    path.write_bytes(
        b"Email,Name,Company\n"
        b"ann@example.com,Ann,Acme\n"
        b"not-an-address,Bob,Acme\n"
        b"ANN@example.com,Ann B,\n"
        b"short@example.com,Short\n"
        b"blocked@example.com,Blocked,X\n"
        b"\xffbad@example.com,Enc,X\n"
        b'"quoted, name"@example.com,"Q, Name",X\n'
        b"zed@example.com,Zed,Zeta\n")
    result = importer.import_csv(new_session, path, "weekly", confirmed=True, consent_source="sheet 2024")
    assert (result.imported, result.errors, result.skipped) == (2, 4, 1)
    report = importer.read_report(result.report_path)
    reasons = {int(r["line"]): r["reason"] for r in report}
    assert reasons[3].startswith("invalid address")
    assert reasons[4] == "duplicate of line 2, merged"
    assert reasons[5] == "expected 3 columns, found 2"
    assert reasons[6] == "suppressed address, skipped"
    assert reasons[7] == "not UTF-8 text (bad encoding)"
    assert reasons[8].startswith("invalid address")
    with session_scope() as session:
        ann = session.scalar(select(Subscriber).where(Subscriber.email == "ann@example.com"))
        assert ann is not None and ann.name == "Ann B" and ann.attributes == {"company": "Acme"}
        statuses = set(session.scalars(select(Subscription.status)))
        assert statuses == {SubscriptionStatus.CONFIRMED}
        assert session.scalar(select(func.count()).select_from(ConsentEvent)) == 2  # one "imported" each


def test_missing_email_column_is_a_file_error(weekly: str, tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("name,company\nAnn,Acme\n")
    with pytest.raises(importer.ImportFileError, match=r"x.csv:1: no 'email' column"):
        importer.import_csv(new_session, path, "weekly")


def test_confirmed_needs_consent_source(weekly: str, tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("email\na@example.com\n")
    with pytest.raises(service.ServiceError, match="consent-source"):
        importer.import_csv(new_session, path, "weekly", confirmed=True)


def test_crash_half_way_then_resume(weekly: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importer, "CHUNK_ROWS", 10)
    path = tmp_path / "many.csv"
    path.write_text("email,name\n" + "".join(f"user{i}@example.com,User {i}\n" for i in range(45)))
    calls = []

    def crash_after_two_chunks(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == 2:
            raise KeyboardInterrupt("power cut")

    with pytest.raises(KeyboardInterrupt):
        importer.import_csv(new_session, path, "weekly", progress=crash_after_two_chunks)
    assert count(Subscriber) == 20 and count(Subscription) == 20  # whole chunks only
    result = importer.import_csv(new_session, path, "weekly")
    assert result.resumed_from_line == 21
    assert count(Subscriber) == 45 and count(Subscription) == 45
    assert result.imported == 45 and result.errors == 0
    with session_scope() as session:
        assert set(session.scalars(select(Subscription.status))) == {SubscriptionStatus.PENDING}


def test_database_failure_in_the_writer_stops_the_import_at_a_chunk_boundary(
        weekly: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks are written by a background thread while the next one is read: its failure must reach the caller,
    and what it leaves behind must still be whole chunks that a rerun resumes after."""
    monkeypatch.setattr(importer, "CHUNK_ROWS", 10)
    path = tmp_path / "many.csv"
    path.write_text("email,name\n" + "".join(f"user{i}@example.com,User {i}\n" for i in range(45)))
    real_write = importer._write_rows
    calls = []

    def failing_third_chunk(*args: object, **kwargs: object) -> tuple[int, int]:
        calls.append(1)
        if len(calls) == 3:
            raise ConnectionError("database went away")
        return real_write(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(importer, "_write_rows", failing_third_chunk)
    with pytest.raises(ConnectionError, match="database went away"):
        importer.import_csv(new_session, path, "weekly")
    assert count(Subscriber) == 20 and count(Subscription) == 20
    monkeypatch.setattr(importer, "_write_rows", real_write)
    result = importer.import_csv(new_session, path, "weekly")
    assert result.resumed_from_line == 21 and result.imported == 45
    assert count(Subscriber) == 45 and count(ConsentEvent) == 45


def test_erase_then_import_does_not_bring_them_back(weekly: str, tmp_path: Path) -> None:
    with session_scope() as session:
        outcome = service.subscribe(session, mailing_lists.get_list(session, "weekly"), "gone@example.com",
                                    source=ConsentSource.ADMIN, confirmed=True, consent_note="t")
        assert outcome.subscription is not None
        privacy.erase(session, outcome.subscription.subscriber_id, source=ConsentSource.ADMIN)
    path = tmp_path / "again.csv"
    path.write_text("email\ngone@example.com\nnew@example.com\n")
    result = importer.import_csv(new_session, path, "weekly", confirmed=True, consent_source="old sheet")
    assert result.imported == 1 and result.skipped == 1
    with session_scope() as session:
        assert session.scalar(select(Subscriber).where(Subscriber.email == "gone@example.com")) is None


def test_unsubscribed_people_stay_unsubscribed(weekly: str, tmp_path: Path) -> None:
    with session_scope() as session:
        outcome = service.subscribe(session, mailing_lists.get_list(session, "weekly"), "left@example.com",
                                    source=ConsentSource.ADMIN, confirmed=True, consent_note="t")
        assert outcome.subscription is not None
        service.unsubscribe(session, outcome.subscription.subscriber_id, None, source=ConsentSource.FORM)
    path = tmp_path / "again.csv"
    path.write_text("email\nleft@example.com\n")
    importer.import_csv(new_session, path, "weekly", confirmed=True, consent_source="old sheet")
    with session_scope() as session:
        assert session.scalar(select(Subscription.status)) is SubscriptionStatus.UNSUBSCRIBED


def test_cli_import_and_export(weekly: str, tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("email,name,city\na@example.com,Ann,Oslo\nbroken,Bob,Rome\n")
    runner = CliRunner()
    result = runner.invoke(app, ["subscribers", "import", str(path), "--list", "weekly", "--confirmed",
                                 "--consent-source", "signup sheet"])
    assert result.exit_code == 0, result.output
    assert "imported 1, skipped 0, errors 1" in result.output
    exported = runner.invoke(app, ["subscribers", "export", "--list", "weekly"])
    rows = list(__import__("csv").DictReader(io.StringIO(exported.stdout)))
    assert [(r["email"], r["name"], r["status"], r["city"], r["attributes"]) for r in rows] == [
        ("a@example.com", "Ann", "confirmed", "Oslo", "")]  # the column became a text field of the list


def test_the_interpreter_hands_over_quickly_during_an_import_and_as_before_after(
        weekly: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer thread waits for the lock after every round trip; the quick handover must last exactly as
    long as imports run in the process, also when two overlap."""
    monkeypatch.setattr(importer, "CHUNK_ROWS", 10)
    before = sys.getswitchinterval()
    seen: list[float] = []
    inner = tmp_path / "inner.csv"
    inner.write_text("email\n" + "".join(f"inner{i}@example.com\n" for i in range(25)))
    outer = tmp_path / "outer.csv"
    outer.write_text("email\n" + "".join(f"outer{i}@example.com\n" for i in range(25)))

    def progress(done: int, total: int) -> None:
        seen.append(sys.getswitchinterval())
        if len(seen) == 1:  # a second import starts and ends while the first runs
            importer.import_csv(new_session, inner, "weekly", progress=lambda d, t: seen.append(
                sys.getswitchinterval()))
            seen.append(sys.getswitchinterval())

    importer.import_csv(new_session, outer, "weekly", progress=progress)
    assert sys.getswitchinterval() == before
    assert len(seen) >= 6 and set(seen) == {GIL_HANDOVER_S}
    assert count(Subscriber) == 50
