"""`enrich.py mode=merge`: reviewed labels written back into the collection's table.

Only empty cells are written (unless `overwrite` names the field), each with its source in
`<field>_source`; the table is backed up and written atomically, and refused when it changed
since the enrichment read it or its last merge wrote it (content hashes in the enrichment's
folder), so that merging one review twice changes nothing the second time.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from significance.catalogue.labelstudio import read_label_studio
from significance.catalogue.review import Decision, decided, read_review, read_rows
from significance.catalogue.table import (
    Table,
    changed_rows,
    content_sha256,
    read_table,
    row_path,
    write_table,
)
from significance.data.collection import SOURCE_SUFFIX
from significance.errors import InputError
from significance.files import write_json
from significance.run_files import ENRICHMENT_FILE, MERGES_FILE, PREDICTIONS_TABLE, TABLE_SNAPSHOT
from significance.tasks import ARTWORK_TYPE_FIELD

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Change:
    """One cell a merge writes."""

    line: int
    path: str
    field: str
    before: str
    after: str
    source: str


def merge_review(
    review: str | Path,
    enrichment: str | Path | None = None,
    table_file: str | Path | None = None,
    accept_above: float | None = None,
    overwrite: Sequence[str] = (),
    dry_run: bool = False,
    data: dict[str, Any] | None = None,
) -> list[Change]:
    """Merge a review.csv (or Label Studio export) into the table; return the changed cells.

    The table is `table_file`, else `data.root`'s annotations table, else the one the
    enrichment read.
    """
    review = Path(review)
    folder = Path(enrichment or review.parent)
    if not (folder / ENRICHMENT_FILE).is_file():
        raise InputError(
            f"{folder} holds no {ENRICHMENT_FILE}: pass enrichment=<the enrichment's folder>"
        )
    record = json.loads((folder / ENRICHMENT_FILE).read_text())
    if table_file is None and (data or {}).get("root"):
        table_file = Path(data["root"]) / (data.get("annotations_file") or "annotations.csv")
    table_file = Path(table_file or record["table"])
    reviewed = read_label_studio(review) if review.suffix == ".json" else read_review(review)
    decisions = [*reviewed, *confident(folder, reviewed, accept_above)]
    check_unchanged(table_file, folder, record)
    table = read_table(table_file)
    changes = apply(table, decisions, set(overwrite), datetime.now().date().isoformat())
    print(merge_summary(table_file, changes, len(reviewed), dry_run))
    if changes and not dry_run:
        write_merge(table_file, table, folder, review, changes)
    return changes


def confident(
    folder: Path, reviewed: Sequence[Decision], accept_above: float | None
) -> list[Decision]:
    """Unreviewed predictions at or above `accept_above`, as `model:` decisions."""
    if accept_above is None:
        return []
    done = {(d.line, d.field) for d in reviewed}
    rows = read_rows(folder / PREDICTIONS_TABLE)
    picked = [
        replace(decided(row, "accept", "", str(folder / PREDICTIONS_TABLE)), decision="")
        for row in rows
        if float(row["probability"]) >= accept_above
        and (int(row["line"]), row["field"]) not in done
    ]
    # A field routed by a predicted type is only as good as that type: keep it when the type
    # is merged too (or a person decided the row's type).
    types = {d.line: d.label for d in [*reviewed, *picked] if d.field == ARTWORK_TYPE_FIELD}
    return [
        d
        for d in picked
        if d.field == ARTWORK_TYPE_FIELD or types.get(d.line, d.artwork_type) == d.artwork_type
    ]


def read_merges(folder: Path) -> list[dict[str, Any]]:
    """The merges made from an enrichment's folder, oldest first."""
    merges_file = folder / MERGES_FILE
    return json.loads(merges_file.read_text())["merges"] if merges_file.is_file() else []


def expected_sha256(folder: Path, record: dict[str, Any]) -> str:
    """The table's hash as the enrichment read it, or as its latest merge wrote it."""
    merges = read_merges(folder)
    return merges[-1]["table_sha256_after"] if merges else record["table_sha256"]


def check_unchanged(table_file: Path, folder: Path, record: dict[str, Any]) -> None:
    """Refuse a table changed since the enrichment read it or since its last merge wrote it."""
    if not table_file.is_file():
        raise InputError(f"annotations table {table_file} not found")
    if content_sha256(table_file) == expected_sha256(folder, record):
        return
    changed = changed_rows(read_table(folder / TABLE_SNAPSHOT), read_table(table_file))
    raise InputError(
        f"{table_file} changed since the enrichment read it (or its last merge wrote it): "
        f"{changed or 'its bytes'}; enrich it again, nothing was merged"
    )


def apply(
    table: Table, decisions: Sequence[Decision], overwrite: set[str], date: str
) -> list[Change]:
    """Write accepted and corrected labels into `table`; return the cells that changed."""
    changes = []
    for decision in decisions:
        if decision.decision == "reject":
            continue
        row = table.rows[decision.line - 2]
        if row_path(row) != decision.path:
            raise InputError(
                f"line {decision.line} of the table is {row_path(row)!r}, not {decision.path!r}"
            )
        before = (row.get(decision.field) or "").strip()
        reviewed = bool(decision.decision)
        if before == decision.label or (before and not (reviewed and decision.field in overwrite)):
            continue
        source = f"review:{date}" if reviewed else f"model:{decision.model}"
        changes.append(
            Change(decision.line, decision.path, decision.field, before, decision.label, source)
        )
    for change in changes:
        table.add_column(change.field)
        table.add_column(change.field + SOURCE_SUFFIX)
        row = table.rows[change.line - 2]
        row[change.field], row[change.field + SOURCE_SUFFIX] = change.after, change.source
    return changes


def merge_summary(table_file: Path, changes: Sequence[Change], reviewed: int, dry_run: bool) -> str:
    """What the merge writes (or would write, with `dry_run`), one line a cell."""
    verb = "would write" if dry_run else "writes"
    lines = [f"Merge into {table_file}: {reviewed} reviewed decisions; {verb} {len(changes)} cells"]
    lines += [
        f"  line {c.line} ({c.path}): {c.field} {c.before or '(empty)'} -> {c.after} [{c.source}]"
        for c in changes
    ]
    return "\n".join(lines)


def write_merge(
    table_file: Path, table: Table, folder: Path, review: Path, changes: list[Change]
) -> None:
    """Back the table up, write it atomically, and record the merge beside the enrichment."""
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f")
    backup = table_file.with_name(f"{table_file.stem}.{stamp}.bak{table_file.suffix}")
    before = content_sha256(table_file)
    shutil.copy2(table_file, backup)
    write_table(table_file, table)
    shutil.copyfile(table_file, folder / TABLE_SNAPSHOT)
    merges = read_merges(folder)
    merges.append(
        {
            "time": stamp,
            "review": str(review.resolve()),
            "review_sha256": content_sha256(review),
            "backup": str(backup),
            "table_sha256_before": before,
            "table_sha256_after": content_sha256(table_file),
            "cells": len(changes),
        }
    )
    write_json(folder / MERGES_FILE, {"merges": merges})
    log.info("Merged %d cells into %s (backup %s)", len(changes), table_file, backup)
