"""Row-for-row comparison of annotations tables, for the catalogue tests."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterable
from pathlib import Path

# Cells blanked in the demo table: (line, field); lines 2.. are the rows in table order.
FIELD_BLANKS = {"coins": ["material", "period"], "frescoes": ["location"], "icons": ["location"]}
TYPE_BLANKS = 2  # rows of `others` whose artwork type is blanked
# A cell that differs: (table line, column, value before, value after).
Difference = tuple[int, str, str, str]


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """The columns and rows of a CSV table."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def write_rows(path: Path, columns: list[str], rows: Iterable[dict[str, str]]) -> None:
    """Write a CSV table."""
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def differences(
    before: Path, after: Path, columns: Iterable[str] | None = None
) -> list[Difference]:
    """Every cell of `columns` (default: every column of either table) that differs, row by row.

    The tables must have the same rows in the same order (same paths): an added, dropped or
    moved row fails here, whatever the cells say.
    """
    old_columns, old = read_rows(before)
    new_columns, new = read_rows(after)
    assert [r["path"] for r in old] == [r["path"] for r in new], "rows added, dropped or moved"
    names = list(columns) if columns is not None else list(dict.fromkeys(old_columns + new_columns))
    return [
        (line, name, a.get(name) or "", b.get(name) or "")
        for line, (a, b) in enumerate(zip(old, new, strict=True), start=2)
        for name in names
        if (a.get(name) or "") != (b.get(name) or "")
    ]


def copy_collection(source: Path, target: Path) -> Path:
    """A copy of a collection whose images are links to the source's (the table is a copy)."""
    shutil.copytree(source, target, copy_function=_link_or_copy)
    table = target / "annotations.csv"
    table.unlink()  # a link to the source's table: writing to it would edit the source's
    table.write_bytes((source / "annotations.csv").read_bytes())  # a copy: tests edit it
    return target


def _link_or_copy(source: str, target: str) -> None:
    try:
        Path(target).hardlink_to(source)
    except OSError:
        shutil.copy2(source, target)


def blank_cells(table: Path) -> set[tuple[int, str]]:
    """Blank two cells of each field in FIELD_BLANKS and TYPE_BLANKS artwork types."""
    columns, rows = read_rows(table)
    blanked: set[tuple[int, str]] = set()
    for artwork_type, fields in FIELD_BLANKS.items():
        lines = [i + 2 for i, row in enumerate(rows) if row["artwork_type"] == artwork_type]
        for field, line in zip(fields * 2, lines[1:5], strict=False):
            blanked.add((line, field))
    others = [i + 2 for i, row in enumerate(rows) if row["artwork_type"] == "others"]
    blanked |= {(line, "artwork_type") for line in others[:TYPE_BLANKS]}
    for line, field in blanked:
        rows[line - 2][field] = ""
    write_rows(table, columns, rows)
    return blanked
