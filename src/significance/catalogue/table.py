"""The collection's annotations table as a catalogue: every column and row kept, in order."""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

from significance.data.collection import table_path
from significance.errors import CollectionError
from significance.files import atomic_write

PATH_COLUMN = "path"


@dataclass
class Table:
    """A CSV table: its columns in order and its rows (each a dict of every column)."""

    columns: list[str]
    rows: list[dict[str, str]] = field(default_factory=list)
    line_end: str = "\r\n"  # as the file had it: a merge changes only the cells it writes

    def add_column(self, name: str) -> None:
        """Append an empty column unless the table has it already."""
        if name not in self.columns:
            self.columns.append(name)
            for row in self.rows:
                row.setdefault(name, "")

    def text(self) -> str:
        """The table as CSV text, as `write_table` writes it."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns, lineterminator=self.line_end)
        writer.writeheader()
        writer.writerows(self.rows)
        return buffer.getvalue()


def read_table(path: str | Path) -> Table:
    """Read a CSV table (UTF-8, with or without BOM); a short row reads as empty cells."""
    path = Path(path)
    if not path.is_file():
        raise CollectionError(f"annotations table {path} not found: set data.root")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = list(reader.fieldnames or [])
        rows = [{c: (row.get(c) or "") for c in columns} for row in reader]
    with path.open("rb") as handle:
        line_end = "\r\n" if handle.readline().endswith(b"\r\n") else "\n"
    if PATH_COLUMN not in columns:
        raise CollectionError(f"{path} has no `{PATH_COLUMN}` column; it has {columns}")
    return Table(columns, rows, line_end)


def write_table(path: str | Path, table: Table) -> None:
    """Write `table` atomically: a crash leaves the previous file whole."""
    with atomic_write(path, newline="", encoding="utf-8") as handle:
        handle.write(table.text())


def content_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes: whether a table changed since it was read."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def row_path(row: dict[str, str]) -> str:
    """The image a row describes, as the index names it (`table_path`)."""
    return table_path(row.get(PATH_COLUMN) or "")


def changed_rows(before: Table, after: Table, limit: int = 5) -> str:
    """The rows (table line numbers and paths) that differ between two versions of a table."""
    lines = []
    for index in range(max(len(before.rows), len(after.rows))):
        old = before.rows[index] if index < len(before.rows) else None
        new = after.rows[index] if index < len(after.rows) else None
        if old != new:
            lines.append(f"line {index + 2} ({row_path(new or old or {})})")
    if before.columns != after.columns and not lines:
        lines.append("the header")
    shown = ", ".join(lines[:limit])
    return shown + (f" and {len(lines) - limit} more" if len(lines) > limit else "")
