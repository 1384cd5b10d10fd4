"""CSV that a spreadsheet opens as text: every CSV the app writes goes through `writer` here.

Names and addresses come from the public form and from imported files, and spreadsheet programs run a cell that
starts with ``=``, ``+``, ``-`` or ``@`` as a formula (``=HYPERLINK(...)`` phones home with the row next to it); a
leading tab or carriage return hides the same trick from a quick look. Such a cell gets a leading apostrophe, the
prefix spreadsheets themselves use for "this is text" (OWASP's advice for CSV injection). The file stays valid CSV
and the import drops that apostrophe again (`read_cell`), so an export imports back as it was.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import IO, Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")  # and full-width


def safe_cell(value: Any) -> Any:
    """The value as a spreadsheet shows it, never as a formula it runs; non-text values pass unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def read_cell(value: str) -> str:
    """Undo `safe_cell`, so a file we exported imports back as it was."""
    if value.startswith("'") and value[1:].startswith(FORMULA_STARTS):
        return value[1:]
    return value


class SafeWriter:
    """csv.writer whose rows are neutralised cell by cell."""

    def __init__(self, out: IO[str]) -> None:
        self._writer = csv.writer(out)

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._writer.writerow([safe_cell(value) for value in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def writer(out: IO[str]) -> SafeWriter:
    return SafeWriter(out)
