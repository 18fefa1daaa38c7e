"""A run's split: index the collection, assign its images, write `split.csv` and `skipped.csv`.

Training draws train, validation and test; an evaluation on another collection takes every
image as a test image. Either way `make_split` is the one place a collection becomes a split.
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from collections.abc import Mapping, Set
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from significance.data.collection import (
    LABEL_SOURCES,
    Sample,
    SkippedFile,
    check_label_sources,
    collection_labels,
    index_collection,
)
from significance.data.demo import demo_spec, ensure_demo_collection
from significance.data.folds import check_fold_groups, cross_validation_split, fold_problems
from significance.data.split import (
    class_shares,
    split_collection,
    split_stratified,
    test_overlap,
    write_split,
)
from significance.errors import SplitError
from significance.files import atomic_write
from significance.run_files import SKIPPED_FILE
from significance.tasks import Task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CollectionSettings:
    """Where a collection's images are and how its files become a task's samples."""

    root: Path
    layout: str = "annotations"
    annotations_file: str = "annotations.csv"
    facts_file: Path | None = None  # the facts of scanned files (`index_collection`)
    group_duplicates: bool = False
    duplicate_distance: int = 6
    demo_scale: str | None = None  # set: the generated demo collection, made on first use
    label_sources: tuple[str, ...] = LABEL_SOURCES  # who gave the labels it trains on

    def __post_init__(self) -> None:
        if self.demo_scale is not None:
            demo_spec(self.demo_scale)  # a scale that does not exist fails before any work

    @classmethod
    def from_config(
        cls, data: Mapping[str, Any], facts_file: str | Path | None = None
    ) -> CollectionSettings:
        """From a `data` config (unset values take the defaults; no root: the demo collection)."""
        given = {key: value for key, value in data.items() if value is not None}
        facts = given.get("facts_file", facts_file)
        return cls(
            root=Path(given["root"] if given.get("root") else given.get("demo_dir", "data/demo")),
            layout=given.get("layout", "annotations"),
            annotations_file=given.get("annotations_file", "annotations.csv"),
            facts_file=Path(facts) if facts else None,
            group_duplicates=bool(given.get("group_duplicates", False)),
            duplicate_distance=int(given.get("duplicate_distance", 6)),
            demo_scale=None if given.get("root") else given.get("demo_scale", "demo"),
            label_sources=check_label_sources(given.get("label_sources", LABEL_SOURCES)),
        )

    def ensure(self) -> None:
        """Generate the demo collection when this is it and it is not there yet."""
        if self.demo_scale is not None:
            ensure_demo_collection(self.root, spec=demo_spec(self.demo_scale))

    def index(self, task: Task) -> tuple[list[Sample], list[SkippedFile]]:
        """The readable labelled images of `task`, and the files left out (`index_collection`)."""
        return index_collection(
            self.root,
            self.layout,
            task,
            self.annotations_file,
            self.facts_file,
            self.group_duplicates,
            self.duplicate_distance,
            self.label_sources,
        )


@dataclass(frozen=True)
class SplitSettings:
    """How a run draws its split: the shares, the seed, and the tasks the draw is one for."""

    test_fraction: float = 0.2
    val_fraction: float = 0.1
    seed: int = 0
    # The split is drawn once for the collection, stratified on all these tasks' labels.
    tasks: tuple[Task, ...] = ()
    # Cross-validation: the collection in `folds` folds, fold `fold` the test split (None: off).
    folds: int | None = None
    fold: int | None = None

    def __post_init__(self) -> None:
        problems = fold_problems(self.folds, self.fold)
        if problems:
            raise SplitError("; ".join(problems))

    @property
    def fold_name(self) -> str:
        """`fold 2 of 5` for a cross-validation fold, else empty."""
        return f"fold {self.fold} of {self.folds}" if self.folds else ""


@dataclass(frozen=True)
class RunSplit:
    """What `make_split` wrote: the samples with their split, the files left out."""

    samples: list[Sample]
    assignment: dict[str, str]
    skipped: list[SkippedFile]
    excluded: int = 0  # images left out because they were `seen`


def make_split(
    split_file: str | Path,
    collection: CollectionSettings,
    task: Task,
    draw: SplitSettings | None = None,
    seen: Set[str] = frozenset(),
) -> RunSplit:
    """Index `collection` for `task`, assign its images, write `split_file` and `skipped.csv`.

    With `draw`, a run's train/val/test split (`draw_split`); without, every image is a test
    image (an evaluation), less those whose SHA-256 is in `seen` (what a model trained on).
    """
    split_file = Path(split_file)
    samples, skipped = collection.index(task)
    kept = [sample for sample in samples if sample.sha256 not in seen]
    if draw is None:
        assignment = dict.fromkeys((sample.path for sample in kept), "test")
    else:
        assignment, drawn = draw_split(collection, task, kept, draw)
        log_split(task, kept, assignment, drawn, split_file, draw.fold_name)
    write_split(split_file, kept, assignment)
    write_skipped(split_file.with_name(SKIPPED_FILE), skipped)
    return RunSplit(kept, assignment, skipped, excluded=len(samples) - len(kept))


def draw_split(
    collection: CollectionSettings, task: Task, samples: list[Sample], draw: SplitSettings
) -> tuple[dict[str, str], dict[str, str]]:
    """A run's split of `samples` (`{path: split}`) and the collection's draw it comes from.

    The draw is one for the collection, stratified on the labels of `task` and every one of
    `draw.tasks`; unreadable files are in it too, so none moves another image. With
    `draw.folds`, the test split is fold `draw.fold` of the collection's folds.
    """
    tasks = {each.id: each for each in (task, *draw.tasks)}.values()
    labels = collection_labels(
        collection.root,
        collection.layout,
        tasks,
        collection.annotations_file,
        collection.label_sources,
    )
    test_fraction = draw.test_fraction
    if draw.folds:
        check_fold_groups(samples, task.classes, draw.folds)
        drawn = cross_validation_split(labels, draw.folds, draw.fold, draw.val_fraction, draw.seed)
        test_fraction = 1 / draw.folds
    else:
        drawn = split_collection(labels, draw.test_fraction, draw.val_fraction, draw.seed)
    assignment = split_stratified(
        samples,
        test_fraction,
        draw.val_fraction,
        seed=draw.seed,
        classes=task.classes,
        collection_split=drawn,
    )
    return assignment, drawn


def log_split(
    task: Task,
    samples: list[Sample],
    assignment: dict[str, str],
    collection_split: dict[str, str],
    split_file: Path,
    fold_name: str = "",
) -> None:
    """Log the split's size (and cross-validation fold), every class's achieved shares and the
    test images it shares with the collection's draw (and so with the collection's tasks)."""
    counts = Counter(assignment.values())
    of = f"{task.id} ({fold_name})" if fold_name else task.id
    log.info("Split %d images of %s: %s -> %s", len(samples), of, dict(counts), split_file)
    for label, shares in class_shares(samples, assignment).items():
        achieved = ", ".join(f"{split} {share:.1%}" for split, share in shares.items())
        log.info("  class %s: %s", label, achieved)
    overlap = test_overlap(samples, assignment, collection_split)
    log.info(
        "  %.1f%% of the collection's test images labelled for %s are in its test split",
        100 * overlap,
        task.id,
    )


def write_skipped(path: Path, skipped: list[SkippedFile]) -> None:
    """Write `skipped.csv`: the files left out of the task and why (header only if none)."""
    with atomic_write(path, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "reason"])
        writer.writerows((item.path, item.reason) for item in skipped)
