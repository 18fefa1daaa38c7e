"""Auditing a collection before training: what it holds, what is wrong with it, what leaks.

`audit_collection` returns an `AuditReport`: facts, no formatting. One scan (shared with
training through the facts file of `significance.data.scan`) decodes every file once; everything
else is bookkeeping on its facts. `significance.reporting.audit_report` renders the report and
`significance.audit_command` runs the audit from `audit.py`'s config.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from significance.data.collection import LAYOUTS, read_labels, table_path
from significance.data.images import IMAGE_SUFFIXES, is_hidden, pixel_limit
from significance.data.label_issues import LabelIssue
from significance.data.scan import ImageFacts, duplicate_groups, scan_files
from significance.data.split import minimum_class_size, read_split
from significance.errors import CollectionError, InputError
from significance.tasks import Task

# Problems that would corrupt training or evaluation: `strict` fails on them. Unreadable and
# missing files are not among them: indexing leaves them out and lists them in skipped.csv.
CORRUPTING = frozenset({"table error", "class too small", "label conflict", "leakage"})

Labels = dict[str, dict[str, str]]  # task id -> {path: label}


@dataclass(frozen=True)
class Problem:
    """One problem of one file (path empty for a problem of a class or of the table)."""

    path: str
    problem: str
    detail: str


@dataclass
class AuditReport:
    """What an audit found: the files scanned, readable images per class, every problem."""

    root: Path
    layout: str
    files: int = 0
    counts: dict[str, Counter] = field(default_factory=dict)  # task id -> readable per class
    tasks: dict[str, Task] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    leakage: Counter = field(default_factory=Counter)  # task (split file) -> leaking images
    test_fraction: float = 0.2
    val_fraction: float = 0.1
    # Labels that out-of-fold predictions doubt (`label_issues=<cross-validation sweep>`).
    label_issues: list[LabelIssue] = field(default_factory=list)

    @property
    def corrupting(self) -> list[Problem]:
        """The problems that make `strict` fail."""
        return [p for p in self.problems if p.problem in CORRUPTING]

    @property
    def problem_counts(self) -> Counter:
        """How many problems of each kind."""
        return Counter(p.problem for p in self.problems)


def expected_split_sizes(count: int, test_fraction: float, val_fraction: float) -> Counter:
    """Images of one class in train / val / test as `split_stratified` sizes them."""
    if count < minimum_class_size(val_fraction):
        return Counter(train=count)
    test = max(1, round(test_fraction * count))
    val = max(1, round(val_fraction * (count - test))) if val_fraction > 0 else 0
    return Counter(train=count - test - val, val=val, test=test)


def audit_collection(
    root: str | Path,
    layout: str,
    tasks: list[Task],
    annotations_file: str = "annotations.csv",
    facts_file: str | Path | None = None,
    duplicate_distance: int = 6,
    min_size: int = 224,
    split_files: list[Path] | None = None,
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
) -> AuditReport:
    """Scan the collection once and list every problem of it for `tasks`."""
    root = Path(root)
    check_collection(root, layout)
    report = AuditReport(root, layout, test_fraction=test_fraction, val_fraction=val_fraction)
    table = annotations_file if layout == "annotations" else None
    labels, report.problems = _read_task_labels(root, layout, tasks, annotations_file)
    referenced, unreferenced = _collection_files(root, table, labels)
    report.files = len(referenced) + len(unreferenced)
    facts = _scan(root, [*referenced, *unreferenced], facts_file)
    report.problems += [
        _unreadable(path, facts[path], table) for path in referenced if facts[path].problem
    ]
    strays = [path for path in unreferenced if _is_image(path, facts[path])]
    report.problems += [_unreferenced(path, layout, table) for path in strays]
    images = {path: facts[path] for path in [*referenced, *strays]}
    report.problems += [
        Problem(path, kind, detail)
        for path, found in images.items()
        for kind, detail in unusual(found, min_size)
    ]
    readable = {path: found for path, found in images.items() if found.problem is None}
    copies = duplicate_groups(readable, duplicate_distance)
    report.problems += _duplicate_problems(copies, readable, labels)
    for task in (task for task in tasks if task.id in labels):
        counts = Counter(label for path, label in labels[task.id].items() if path in readable)
        report.tasks[task.id], report.counts[task.id] = task, counts
        report.problems += _too_small(task, counts, val_fraction)
    for split_file in split_files or []:
        name, leaks = split_task_name(split_file), _leakage(split_file, copies)
        report.leakage[name] += len(leaks)
        report.problems += [Problem(path, "leakage", f"{name}: {detail}") for path, detail in leaks]
    return report


def check_collection(root: Path, layout: str) -> None:
    """Refuse a collection that cannot be audited at all: no such folder, no such layout."""
    if not root.is_dir():
        raise CollectionError(f"data.root {root} is not a folder")
    if layout not in LAYOUTS:
        raise CollectionError(f"data.layout must be one of {LAYOUTS}, got {layout!r}")


def _read_task_labels(
    root: Path, layout: str, tasks: list[Task], annotations_file: str
) -> tuple[Labels, list[Problem]]:
    """The labels of each task the collection can be read for; a table error for each other."""
    labels: Labels = {}
    problems = []
    for task in tasks:
        try:
            samples = read_labels(root, layout, task, annotations_file)
        except CollectionError as error:
            where = annotations_file if layout == "annotations" else ""
            problems.append(Problem(where, "table error", str(error)))
            continue
        labels[task.id] = {sample.path: sample.label for sample in samples}
    return labels, problems


def _collection_files(root: Path, table: str | None, labels: Labels) -> tuple[list[str], list[str]]:
    """The files the labels or the table refer to, and every other visible file on disk."""
    listed = {path for task_labels in labels.values() for path in task_labels}
    referenced = sorted(listed | set(_table_paths(root / table) if table else ()))
    unreferenced = sorted(set(_files_on_disk(root, table)) - set(referenced))
    return referenced, unreferenced


def _scan(root: Path, paths: list[str], facts_file: str | Path | None) -> dict[str, ImageFacts]:
    """The facts of each file, by its path relative to `root`."""
    scanned = scan_files([root / p for p in paths], facts_file, description="Auditing images")
    return dict(zip(paths, scanned.values(), strict=True))


def _unreadable(path: str, found: ImageFacts, table: str | None) -> Problem:
    """The problem of a referenced file that cannot be read."""
    if found.problem == "file not found":
        return Problem(path, found.problem, f"{table or 'its class folder'} lists it")
    return Problem(path, str(found.problem), found.detail)


def _is_image(path: str, found: ImageFacts) -> bool:
    """Whether an unreferenced file is an image; other files (notes, scripts) are no concern."""
    decodes_or_foreign = found.problem in (None, "unsupported format")
    return Path(path).suffix.lower() in IMAGE_SUFFIXES or decodes_or_foreign


def _unreferenced(path: str, layout: str, table: str | None) -> Problem:
    """An image nothing refers to, and why indexing does not."""
    why = "no row of the table" if table else "no class folder of the task"
    if layout == "folders" and Path(path).suffix.lower() not in IMAGE_SUFFIXES:
        why = "indexing (its suffix is not an image suffix)"
    return Problem(path, "unreferenced", f"{why} refers to it")


def _too_small(task: Task, counts: Counter, val_fraction: float) -> list[Problem]:
    """A problem for each class of `task` with too few readable images to split."""
    minimum = minimum_class_size(val_fraction)
    return [
        Problem(
            "",
            "class too small",
            f"task {task.id}: class {label!r} has {counts[label]} readable image(s), "
            f"a split needs at least {minimum}",
        )
        for label in task.classes
        if counts[label] < minimum
    ]


def unusual(found: ImageFacts, min_size: int) -> list[tuple[str, str]]:
    """The oddities of a decodable image that loading converts but that are worth knowing."""
    if found.problem is not None:
        return []
    odd = []
    if found.mode == "CMYK":
        odd.append(("cmyk", "converted to RGB"))
    if found.mode.startswith("I;16") or found.mode == "I":
        odd.append(("16-bit", f"mode {found.mode}, scaled to 8 bits"))
    if found.mode in ("P", "PA") and found.transparency:
        odd.append(("palette with alpha", "transparency composited on white"))
    if found.mode in ("LA", "La") or (found.mode in ("L", "I;16") and found.transparency):
        odd.append(("greyscale with alpha", "transparency composited on white"))
    if found.orientation not in (0, 1):
        odd.append(("exif-rotated", f"EXIF orientation {found.orientation}, turned upright"))
    if found.frames > 1:
        odd.append(("multi-frame", f"{found.frames} frames, the first is used"))
    if min(found.width, found.height) < min_size:
        odd.append(("small", f"{found.width}x{found.height}, under the model input {min_size}"))
    if found.width * found.height > pixel_limit():
        odd.append(
            (
                "very large",
                f"{found.width}x{found.height}, above Pillow's "
                f"decompression-bomb limit {pixel_limit()}: decoded reduced",
            )
        )
    return odd


def _duplicate_problems(
    copies: list[list[str]], facts: dict[str, ImageFacts], labels: Labels
) -> list[Problem]:
    """A row per copy, and per task where the copies carry different labels."""
    problems = []
    for group in copies:
        hashes = Counter(facts[path].sha256 for path in group)
        for path in group:
            others = ", ".join(p for p in group if p != path)
            kind = "duplicate" if hashes[facts[path].sha256] > 1 else "near-duplicate"
            problems.append(Problem(path, kind, f"of {others}"))
        for task_id, task_labels in labels.items():
            found = {path: task_labels[path] for path in group if path in task_labels}
            if len(set(found.values())) > 1:
                detail = ", ".join(f"{path}={label}" for path, label in found.items())
                problems += [
                    Problem(path, "label conflict", f"task {task_id}: {detail}") for path in found
                ]
    return problems


def _leakage(split_file: Path, copies: list[list[str]]) -> list[tuple[str, str]]:
    """Images with a copy on the other side of train / test in `split_file`."""
    split_of = {s.path: name for name, samples in read_split(split_file).items() for s in samples}
    leaks = []
    for group in copies:
        sides = {path: split_of[path] for path in group if path in split_of}
        if {"train", "test"} <= set(sides.values()):
            detail = ", ".join(f"{path} ({split})" for path, split in sides.items())
            leaks += [(path, detail) for path, split in sides.items() if split in ("train", "test")]
    return leaks


def split_task_name(split_file: Path) -> str:
    """The task of a run's split.csv, from the run's Hydra config beside it if there is one."""
    config = split_file.parent / ".hydra" / "config.yaml"
    if config.is_file():
        task = (yaml.safe_load(config.read_text()) or {}).get("task") or {}
        if task.get("id"):
            return f"{task['id']} ({split_file.parent.name})"
    return split_file.parent.name


def find_split_files(location: str | Path | None) -> list[Path]:
    """A split.csv, or every split.csv under a run or sweep folder."""
    if not location:
        return []
    location = Path(location)
    if location.is_file():
        return [location]
    if not location.is_dir():
        raise InputError(f"split_file {location} is neither a split.csv nor a folder")
    found = sorted(location.rglob("split.csv"))
    if not found:
        raise InputError(f"no split.csv under {location}")
    return found


def _table_paths(table: Path) -> list[str]:
    """Every path the annotations table lists, whatever its labels (none if unreadable)."""
    if not table.is_file():
        return []
    with table.open(newline="", encoding="utf-8-sig") as handle:
        return [table_path(row["path"]) for row in csv.DictReader(handle) if row.get("path")]


def _files_on_disk(root: Path, table: str | None) -> list[str]:
    """Every visible file under `root` (relative, posix), the annotations table excepted."""
    files = (path.relative_to(root) for path in root.rglob("*") if path.is_file())
    return sorted(f.as_posix() for f in files if not is_hidden(f) and f.as_posix() != table)
