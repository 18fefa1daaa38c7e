"""Auditing a collection before training: what it holds, what is wrong with it, what leaks.

The plain function behind `audit.py`. One scan (shared with training through the cache of
`significance.data.scan`) decodes every file once; everything else is bookkeeping on its facts.
"""

from __future__ import annotations

import csv
import logging
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from omegaconf import DictConfig

from significance.config import config_dirs
from significance.data.collection import LAYOUTS, read_labels, table_path
from significance.data.demo import demo_spec, ensure_demo_collection
from significance.data.images import IMAGE_SUFFIXES, pixel_limit
from significance.data.scan import ImageFacts, duplicate_groups, scan_files
from significance.data.split import minimum_class_size, read_split
from significance.errors import CollectionError, InputError
from significance.models.build import preprocessing_for
from significance.tasks import Task, discover_tasks

log = logging.getLogger(__name__)

# Problems that would corrupt training or evaluation: `strict` fails on them. Unreadable and
# missing files are not among them: indexing leaves them out and lists them in skipped.csv.
CORRUPTING = frozenset({"table error", "class too small", "label conflict", "leakage"})
AUDIT_COLUMNS = ("path", "problem", "detail")


@dataclass(frozen=True)
class Problem:
    """One row of `audit.csv`."""

    path: str
    problem: str
    detail: str


@dataclass
class AuditReport:
    """What an audit found; `markdown()` is `audit.md`."""

    root: Path
    layout: str
    files: int = 0
    counts: dict[str, Counter] = field(default_factory=dict)  # task id -> readable per class
    tasks: dict[str, Task] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    leakage: Counter = field(default_factory=Counter)  # task (split file) -> leaking images
    test_fraction: float = 0.2
    val_fraction: float = 0.1

    @property
    def corrupting(self) -> list[Problem]:
        """The problems that make `strict` fail."""
        return [p for p in self.problems if p.problem in CORRUPTING]

    def markdown(self) -> str:
        """The report as Markdown: counts table, problem counts, leakage, every problem."""
        lines = [
            f"# Audit of `{self.root}` ({self.layout})",
            "",
            f"{self.files} files scanned.",
            "",
        ]
        lines += [
            "## Images per task and class (readable images; train / val / test as a "
            f"split with test {self.test_fraction}, val {self.val_fraction} would give)",
            "",
        ]
        lines += [*self.counts_table(), ""]
        by_kind = Counter(p.problem for p in self.problems)
        lines += ["## Problems", ""]
        if by_kind:
            lines += ["| problem | files | corrupts training or evaluation |", "|---|---|---|"]
            lines += [
                f"| {kind} | {count} | {'yes' if kind in CORRUPTING else ''} |"
                for kind, count in sorted(by_kind.items())
            ]
        else:
            lines.append("None found.")
        if self.leakage:
            lines += ["", "## Leakage: copies of one image on both sides of train / test", ""]
            lines += ["| split file | images |", "|---|---|"]
            lines += [f"| {name} | {count} |" for name, count in sorted(self.leakage.items())]
        if self.problems:
            lines += [
                "",
                "## Every problem (also in audit.csv)",
                "",
                "| path | problem | detail |",
                "|---|---|---|",
            ]
            lines += [
                f"| {p.path} | {p.problem} | {p.detail.replace('|', '/')} |" for p in self.problems
            ]
        return "\n".join(lines) + "\n"

    def counts_table(self) -> list[str]:
        """The study's cardinality table (dataset.png): one row per task, classes flagged."""
        rows = [
            "| artwork type | field | classes | images total / train / val / test "
            "| per class | too small to split |",
            "|---|---|---|---|---|---|",
        ]
        minimum = minimum_class_size(self.val_fraction)
        for task_id, counts in self.counts.items():
            task = self.tasks[task_id]
            parts = Counter()
            for label in task.classes:
                parts.update(
                    expected_split_sizes(counts[label], self.test_fraction, self.val_fraction)
                )
            total = sum(counts[label] for label in task.classes)
            small = [
                f"{label} ({counts[label]} < {minimum})"
                for label in task.classes
                if counts[label] < minimum
            ]
            rows.append(
                f"| {task.artwork_type or '(stage 1)'} | {task.field} | {', '.join(task.classes)} "
                f"| {total} / {parts['train']} / {parts['val']} / {parts['test']} "
                f"| {', '.join(f'{label} {counts[label]}' for label in task.classes)} "
                f"| {', '.join(small)} |"
            )
        return rows

    def summary(self) -> str:
        """What `audit.py` prints: the counts table and the number of each problem."""
        by_kind = Counter(p.problem for p in self.problems)
        lines = [*self.counts_table(), ""]
        flag = "  (corrupts training or evaluation)"
        lines += [
            f"{count:6d}  {kind}{flag if kind in CORRUPTING else ''}"
            for kind, count in sorted(by_kind.items())
        ] or ["No problems found."]
        lines += [
            f"leakage in {name}: {count} images" for name, count in sorted(self.leakage.items())
        ]
        return "\n".join(lines)


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
    if not root.is_dir():
        raise CollectionError(f"data.root {root} is not a folder")
    if layout not in LAYOUTS:
        raise CollectionError(f"data.layout must be one of {LAYOUTS}, got {layout!r}")
    report = AuditReport(root, layout, test_fraction=test_fraction, val_fraction=val_fraction)
    labels: dict[str, dict[str, str]] = {}  # task id -> {path: label}
    for task in tasks:
        try:
            labels[task.id] = {
                s.path: s.label for s in read_labels(root, layout, task, annotations_file)
            }
        except CollectionError as error:
            report.problems.append(
                Problem(
                    annotations_file if layout == "annotations" else "", "table error", str(error)
                )
            )
    table = annotations_file if layout == "annotations" else None
    listed = {path for task_labels in labels.values() for path in task_labels}
    referenced = sorted(listed | set(_table_paths(root / table) if table else ()))
    unreferenced = sorted(set(_files_on_disk(root, table)) - set(referenced))
    paths = [*referenced, *unreferenced]
    scanned = scan_files([root / p for p in paths], facts_file, description="Auditing images")
    facts = dict(zip(paths, scanned.values(), strict=True))
    report.files = len(paths)
    for path in referenced:
        found = facts[path]
        if found.problem == "file not found":
            listed_in = table or "its class folder"
            report.problems.append(Problem(path, found.problem, f"{listed_in} lists it"))
        elif found.problem is not None:
            report.problems.append(Problem(path, found.problem, found.detail))
    for path in unreferenced:
        # Other files (notes, scripts) are no concern; images and unreadable formats are.
        is_image = Path(path).suffix.lower() in IMAGE_SUFFIXES or facts[path].problem in (
            None,
            "unsupported format",
        )
        if is_image:
            why = "no row of the table" if table else "no class folder of the task"
            if layout == "folders" and Path(path).suffix.lower() not in IMAGE_SUFFIXES:
                why = "indexing (its suffix is not an image suffix)"
            report.problems.append(Problem(path, "unreferenced", f"{why} refers to it"))
        else:
            del facts[path]
    for path, found in facts.items():
        report.problems += [
            Problem(path, kind, detail) for kind, detail in unusual(found, min_size)
        ]
    readable = {path: found for path, found in facts.items() if found.problem is None}
    copies = duplicate_groups(readable, duplicate_distance)
    report.problems += _duplicate_problems(copies, readable, labels)
    minimum = minimum_class_size(val_fraction)
    for task in tasks:
        if task.id not in labels:
            continue
        counts = Counter(label for path, label in labels[task.id].items() if path in readable)
        report.tasks[task.id], report.counts[task.id] = task, counts
        for label in task.classes:
            if counts[label] < minimum:
                report.problems.append(
                    Problem(
                        "",
                        "class too small",
                        f"task {task.id}: class {label!r} has {counts[label]} readable image(s), "
                        f"a split needs at least {minimum}",
                    )
                )
    for split_file in split_files or []:
        leaks = _leakage(split_file, copies)
        name = split_task_name(split_file)
        report.leakage[name] += len(leaks)
        report.problems += [Problem(path, "leakage", f"{name}: {detail}") for path, detail in leaks]
    return report


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
    copies: list[list[str]], facts: dict[str, ImageFacts], labels: dict[str, dict[str, str]]
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
    files = []
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        if table is not None and relative.as_posix() == table:
            continue
        files.append(relative.as_posix())
    return sorted(files)


def write_audit(report: AuditReport, output_dir: str | Path) -> tuple[Path, Path]:
    """Write `audit.md` and `audit.csv` into `output_dir`."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "audit.md").write_text(report.markdown())
    with (output_dir / "audit.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(AUDIT_COLUMNS)
        writer.writerows((p.path, p.problem, p.detail) for p in report.problems)
    return output_dir / "audit.md", output_dir / "audit.csv"


def run_audit(cfg: DictConfig) -> int:
    """The plain function behind `audit.py`: audit, write the report, print it; the exit code.

    1 when `cfg.strict` and something would corrupt training or evaluation, 2 when the
    collection cannot be audited at all (no such folder, no tasks), else 0.
    """
    data = cfg.data
    spec = demo_spec(data.get("demo_scale", "demo"))
    root = Path(data.root) if data.root else ensure_demo_collection(data.demo_dir, spec=spec)
    try:
        report = audit_collection(
            root,
            data.layout,
            tasks_to_audit(cfg, root),
            annotations_file=data.annotations_file,
            facts_file=data.facts_file,
            duplicate_distance=data.duplicate_distance,
            # null (models whose weights set the size): the size the model's weights expect.
            min_size=cfg.min_size or preprocessing_for(cfg.model.name, None).image_size,
            split_files=find_split_files(cfg.split_file),
            test_fraction=data.test_fraction,
            val_fraction=data.val_fraction,
        )
    except (CollectionError, FileNotFoundError) as error:
        print(f"audit: {error}", file=sys.stderr)
        return 2
    markdown, table = write_audit(report, cfg.paths.output_dir)
    print(report.summary())
    print(f"\nWritten {markdown} and {table}")
    if cfg.strict and report.corrupting:
        print(
            f"strict: {len(report.corrupting)} problem(s) would corrupt training or evaluation",
            file=sys.stderr,
        )
        return 1
    return 0


def tasks_to_audit(cfg: DictConfig, root: Path) -> list[Task]:
    """`task=...` if given; else every task of the config (annotations) or the class folders."""
    if cfg.get("task"):
        return [Task.from_config(cfg.task)]
    if cfg.data.layout == "annotations":
        tasks: dict[str, Task] = {}
        for directory in config_dirs():
            if (directory / "task").is_dir():
                tasks.update(discover_tasks(directory))
        return list(tasks.values())
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(folders) < 2:
        raise CollectionError(f"{root} has {len(folders)} class folder(s); a task needs two")
    return [Task("folders", 1, None, "class", tuple(folders))]
