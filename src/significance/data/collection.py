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
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from significance.data.images import IMAGE_SUFFIXES, is_hidden
from significance.data.scan import ImageFacts, connected_components, duplicate_groups, scan_files
from significance.errors import CollectionError
from significance.tasks import ARTWORK_TYPE_FIELD, Task

log = logging.getLogger(__name__)

LAYOUTS = ("annotations", "folders")
# Who gave a label, as `<field>_source` of the annotations table says: empty is the catalogue's
# own value, `review:<date>` a person's decision, `model:<checkpoint id>` a merged prediction.
LABEL_SOURCES = ("catalogue", "review", "model")
SOURCE_SUFFIX = "_source"


def label_source(cell: str | None) -> str:
    """The source of a label from its `<field>_source` cell: catalogue, review or model."""
    text = (cell or "").strip()
    return text.split(":", 1)[0] if text else "catalogue"


def check_label_sources(sources: Iterable[str]) -> tuple[str, ...]:
    """`data.label_sources` as a tuple, every name one of `LABEL_SOURCES`."""
    sources = tuple(sources)
    if unknown := sorted(set(sources) - set(LABEL_SOURCES)):
        raise CollectionError(f"data.label_sources: unknown {unknown}; known {LABEL_SOURCES}")
    return sources


def table_path(raw: str) -> str:
    """A `path` cell of the annotations table in the one form the index uses.

    Tables typed by hand or exported on Windows write `./a.jpg`, `scans\\a.jpg` or
    `scans//a.jpg` for the file `scans/a.jpg`; all of them name one image, so all of them
    must become one sample (else one photograph could land in train and test at once).
    """
    text = raw.strip().replace("\\", "/")
    return posixpath.normpath(text) if text else text


@dataclass(frozen=True, order=True)
class Sample:
    """One image of a task: its path relative to the collection root, its label, its group.

    Images of one group (the same object photographed twice) always share a split.
    """

    path: str
    label: str
    group: str
    # The file's content: what tells an image apart wherever the collection is copied.
    sha256: str = ""


@dataclass(frozen=True)
class SkippedFile:
    """A file of the collection left out of the task, and why."""

    path: str
    reason: str
    # The labelled sample the file would have been: it keeps its place in the split draw.
    sample: Sample | None = None


def index_collection(
    root: str | Path,
    layout: str,
    task: Task,
    annotations_file: str = "annotations.csv",
    facts_file: str | Path | None = None,
    group_duplicates: bool = False,
    duplicate_distance: int = 6,
    label_sources: Iterable[str] = LABEL_SOURCES,
) -> tuple[list[Sample], list[SkippedFile]]:
    """List the labelled images of `task` in the collection, sorted by path.

    Every file is decoded once (its facts kept in the facts file `facts_file`, by path, size
    and mtime): files that are missing, truncated or not images are returned as skipped
    instead of failing the run.
    With `group_duplicates`, exact and near-duplicate images join one group, so that a split
    never puts copies of one image on both sides. Labels whose source (`label_source`) is not
    among `label_sources` count as unknown.
    """
    root = Path(root)
    if not root.is_dir():
        raise CollectionError(f"data.root {root} is not a folder")
    samples = read_labels(root, layout, task, annotations_file, label_sources)
    facts = scan_files(
        (root / sample.path for sample in samples),
        facts_file,
        description=f"Checking the images of {task.id}",
    )
    readable, skipped = _readable(root, samples, facts, task)
    if not readable:
        raise CollectionError(f"no readable images for task {task.id} in {root} ({layout})")
    if group_duplicates:
        readable = merge_duplicate_groups(
            readable, {s.path: facts[root / s.path] for s in readable}, duplicate_distance
        )
    return sorted(readable, key=lambda s: s.path), skipped


def _readable(
    root: Path, samples: list[Sample], facts: dict, task: Task
) -> tuple[list[Sample], list[SkippedFile]]:
    """The samples whose files decode (with their SHA-256), and the others with the reason."""
    readable, skipped = [], []
    for sample in samples:
        found = facts[root / sample.path]
        if found.problem is None:
            readable.append(replace(sample, sha256=found.sha256))
        else:
            skipped.append(SkippedFile(sample.path, found.reason, sample))
    if skipped:
        log.warning(
            "%d of %d files of task %s are left out because they cannot be read, e.g. %s: %s",
            len(skipped),
            len(samples),
            task.id,
            skipped[0].path,
            skipped[0].reason,
        )
    return readable, skipped


def read_labels(
    root: Path,
    layout: str,
    task: Task,
    annotations_file: str,
    label_sources: Iterable[str] = LABEL_SOURCES,
) -> list[Sample]:
    """The labelled samples of `task` as the layout lists them (the files are not read)."""
    if layout == "annotations":
        samples = _read_annotations(root, root / annotations_file, task, label_sources)
    elif layout == "folders":
        samples = _read_class_folders(root, task)
    else:
        raise CollectionError(f"data.layout must be one of {LAYOUTS}, got {layout!r}")
    if not samples:
        raise CollectionError(f"no labelled images for task {task.id} in {root} ({layout})")
    return samples


def collection_labels(
    root: Path,
    layout: str,
    tasks: Iterable[Task],
    annotations_file: str = "annotations.csv",
    label_sources: Iterable[str] = LABEL_SOURCES,
) -> list[Sample]:
    """Every image of the collection once per task it is labelled for, labelled `<task>=<class>`.

    What the collection's one split is stratified on; tasks the collection does not serve
    (no column, no labels, other class folders) are left out. Files are not read.
    """
    labels = []
    for task in tasks:
        try:
            samples = read_labels(root, layout, task, annotations_file, label_sources)
        except CollectionError:
            continue
        labels.extend(Sample(s.path, f"{task.id}={s.label}", s.group) for s in samples)
    return labels


def merge_duplicate_groups(
    samples: list[Sample], facts: dict[str, ImageFacts], max_distance: int
) -> list[Sample]:
    """Samples whose images are copies of each other put into one group (the smallest id).

    Groups are merged transitively: an object_id group that holds a copy of another image
    joins that image's group too. Copies that carry different labels are logged.
    """
    copies = duplicate_groups(facts, max_distance)
    by_path = {sample.path: sample for sample in samples}
    pairs = [
        (by_path[first].group, by_path[other].group) for first, *rest in copies for other in rest
    ]
    group_of = {
        group: component[0]
        for component in connected_components({s.group for s in samples}, pairs)
        for group in component
    }
    conflicts = [c for c in copies if len({by_path[p].label for p in c}) > 1]
    if conflicts:
        log.warning(
            "%d sets of duplicate images carry different labels, e.g. %s; "
            "run audit.py to list them all",
            len(conflicts),
            [(p, by_path[p].label) for p in conflicts[0]],
        )
    if copies:
        log.info(
            "%d images are copies of another and share its group (data.group_duplicates)",
            sum(len(c) for c in copies),
        )
    return [replace(sample, group=group_of[sample.group]) for sample in samples]


def _refuse_conflicts_and_unknown(
    table: Path,
    task: Task,
    lines_of: dict[str, dict[str, list[int]]],
    unknown: dict[str, list[int]],
) -> None:
    """One file listed twice is one sample if the rows agree, and a mistake if they do not;
    a label that is not one of the task's classes is a mistake too."""
    conflicts = {path: labels for path, labels in lines_of.items() if len(labels) > 1}
    if conflicts:
        details = "; ".join(f"{path!r}: {labels}" for path, labels in list(conflicts.items())[:10])
        raise CollectionError(
            f"{table}: {len(conflicts)} file(s) listed with different labels for task "
            f"{task.id} (label: lines): {details}"
        )
    if unknown:
        details = "; ".join(f"{label!r} on lines {lines[:5]}" for label, lines in unknown.items())
        raise CollectionError(
            f"{table}: labels not among the classes of task {task.id} {list(task.classes)}: "
            f"{details}"
        )


def _read_annotations(
    root: Path, table: Path, task: Task, label_sources: Iterable[str] = LABEL_SOURCES
) -> list[Sample]:
    """Rows of the annotations table that carry a label for `task` from one of `label_sources`."""
    sources = check_label_sources(label_sources)
    # Stage 2 trusts a row's artwork type only from an allowed source too.
    fields = (task.field,) if task.stage == 1 else (ARTWORK_TYPE_FIELD, task.field)
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
        lines_of: dict[str, dict[str, list[int]]] = {}
        for line, row in enumerate(reader, start=2):
            if task.stage == 2 and row[ARTWORK_TYPE_FIELD].strip() != task.artwork_type:
                continue
            label = (row[task.field] or "").strip()
            if not label or any(
                label_source(row.get(field + SOURCE_SUFFIX)) not in sources for field in fields
            ):
                continue  # unknown for this image (or from a source left out): no part in it
            if label not in task.classes:
                unknown.setdefault(label, []).append(line)
                continue
            path = table_path(row["path"])
            lines_of.setdefault(path, {}).setdefault(label, []).append(line)
            if len(lines_of[path]) == 1 and len(lines_of[path][label]) == 1:
                group = (row.get("object_id") or "").strip() or path
                samples.append(Sample(path=path, label=label, group=group))
    _refuse_conflicts_and_unknown(table, task, lines_of, unknown)
    return samples


def _read_class_folders(root: Path, task: Task) -> list[Sample]:
    """Images under `<root>/<class>/`, one folder per class of `task`."""
    folders = {p.name for p in root.iterdir() if p.is_dir() and not is_hidden(p.name)}
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
            if path.is_file() and not is_hidden(relative) and path.suffix.lower() in IMAGE_SUFFIXES:
                posix = relative.as_posix()
                samples.append(Sample(path=posix, label=label, group=posix))
    return samples
