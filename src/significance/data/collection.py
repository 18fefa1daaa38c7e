"""Reading a collection of images into a labelled index for one task.

Two layouts:
- `annotations`: one CSV table for the whole collection, a row per image, with the columns
  `path` (relative to the collection folder), `artwork_type`, one column per field named as
  in the task files (empty where unknown) and an optional `object_id`;
- `folders`: one folder per class of the task, `<root>/<class>/**/*.jpg`.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from significance.data.images import IMAGE_SUFFIXES
from significance.tasks import ARTWORK_TYPE_FIELD, Task

log = logging.getLogger(__name__)

LAYOUTS = ("annotations", "folders")


class CollectionError(Exception):
    """The collection cannot serve the task; the message says what to fix."""


@dataclass(frozen=True, order=True)
class Sample:
    """One image of a task: its path relative to the collection root, its label, its group.

    Images of one group (the same object photographed twice) always share a split.
    """

    path: str
    label: str
    group: str


@dataclass(frozen=True)
class SkippedFile:
    """A file of the collection left out of the task, and why."""

    path: str
    reason: str


def index_collection(
    root: str | Path, layout: str, task: Task, annotations_file: str = "annotations.csv"
) -> tuple[list[Sample], list[SkippedFile]]:
    """List the labelled images of `task` in the collection, sorted by path.

    Files that are missing or not images are returned as skipped instead of failing the run.
    """
    root = Path(root)
    if not root.is_dir():
        raise CollectionError(f"data.root {root} is not a folder")
    if layout == "annotations":
        samples = _read_annotations(root, root / annotations_file, task)
    elif layout == "folders":
        samples = _read_class_folders(root, task)
    else:
        raise CollectionError(f"data.layout must be one of {LAYOUTS}, got {layout!r}")
    readable, skipped = [], []
    for sample in samples:
        reason = _unreadable_reason(root / sample.path)
        if reason is None:
            readable.append(sample)
        else:
            skipped.append(SkippedFile(sample.path, reason))
    if skipped:
        log.warning(
            "%d of %d files of task %s are left out because they cannot be read, e.g. %s: %s",
            len(skipped), len(samples), task.id, skipped[0].path, skipped[0].reason,
        )
    if not readable:
        raise CollectionError(f"no readable images for task {task.id} in {root} ({layout})")
    return sorted(readable, key=lambda s: s.path), skipped


def _unreadable_reason(path: Path) -> str | None:
    """Why `path` cannot be used as an image (from its header alone), or None."""
    if not path.is_file():
        return "file not found"
    if path.stat().st_size == 0:
        return "empty file"
    try:
        with Image.open(path) as image:
            image.size  # noqa: B018 - parsing the header is the check
    except Exception as error:
        return f"not a readable image ({type(error).__name__}: {error})"
    return None


def _read_annotations(root: Path, table: Path, task: Task) -> list[Sample]:
    """Rows of the annotations table that carry a label for `task`."""
    if not table.is_file():
        raise CollectionError(
            f"annotations table {table} not found: set data.annotations_file, "
            "or data.layout=folders for class folders"
        )
    with table.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or [])
        required = {"path", ARTWORK_TYPE_FIELD, task.field}
        if missing := sorted(required - columns):
            raise CollectionError(
                f"{table} lacks the column(s) {missing} that task {task.id} needs; "
                f"it has {sorted(columns)}"
            )
        samples, unknown = [], {}
        for line, row in enumerate(reader, start=2):
            if task.stage == 2 and row[ARTWORK_TYPE_FIELD].strip() != task.artwork_type:
                continue
            label = (row[task.field] or "").strip()
            if not label:
                continue  # unknown for this image: it takes no part in the task
            if label not in task.classes:
                unknown.setdefault(label, []).append(line)
                continue
            path = row["path"].strip()
            group = (row.get("object_id") or "").strip() or path
            samples.append(Sample(path=path, label=label, group=group))
    if unknown:
        details = "; ".join(f"{label!r} on lines {lines[:5]}" for label, lines in unknown.items())
        raise CollectionError(
            f"{table}: labels not among the classes of task {task.id} {list(task.classes)}: "
            f"{details}"
        )
    return samples


def _read_class_folders(root: Path, task: Task) -> list[Sample]:
    """Images under `<root>/<class>/`, one folder per class of `task`."""
    folders = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    if folders != set(task.classes):
        raise CollectionError(
            f"class folders of {root} do not match the classes of task {task.id}: "
            f"missing {sorted(set(task.classes) - folders)}, "
            f"unexpected {sorted(folders - set(task.classes))}"
        )
    samples = []
    for label in task.classes:
        for path in sorted((root / label).rglob("*")):
            relative = path.relative_to(root)
            hidden = any(part.startswith(".") for part in relative.parts)
            if path.is_file() and not hidden and path.suffix.lower() in IMAGE_SUFFIXES:
                posix = relative.as_posix()
                samples.append(Sample(path=posix, label=label, group=posix))
    return samples
