"""Tables as the reports write them: Markdown for people, CSV for programs (no torch here)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def format_cell(value: Any, digits: int = 4) -> str:
    """A table cell: floats rounded, missing values blank."""
    if value is None or value == "":
        return ""
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(format_cell(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_rows_csv(path: Path, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    """Write dict rows as CSV, `None` as an empty cell."""
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        for row in rows:
            writer.writerow({key: "" if row[key] is None else row[key] for key in columns})


def read_rows_csv(path: Path) -> list[dict[str, str]]:
    """Read a CSV written by `write_rows_csv` back as rows of strings."""
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))
