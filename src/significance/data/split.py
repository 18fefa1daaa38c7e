"""Stratified, group-aware train/validation/test splits, written down once per run."""

from __future__ import annotations

import csv
import hashlib
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

from significance.data.collection import Sample

SPLITS = ("train", "val", "test")
SPLIT_COLUMNS = ("path", "label", "group", "split")


class SplitError(Exception):
    """The samples cannot be split as asked; the message says why."""


def split_stratified(
    samples: Sequence[Sample],
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
    seed: int = 0,
    left_out: Sequence[Sample] = (),
    classes: Sequence[str] = (),
) -> dict[str, str]:
    """Assign every sample to train, val or test; returns `{path: split}`.

    Test takes `test_fraction` of every class, validation `val_fraction` of what is left for
    training, rounded per class (so each class keeps its share to within one image), and at
    least one image per class each. Samples that share a group go to one split together.
    The result depends only on the samples and `seed`, never on order. Groups are drawn in an
    order set by the seed and the group alone, not by the task: an image in the test split of
    one task is, but for a few near each class's cut, in the test split of every task of the
    same collection, so the two stages can be evaluated end to end on images none of their
    models trained on (drawn per task, that left about 5% of the demo's images).
    `left_out` samples (files that cannot be read) take part in the draw but are not assigned,
    so that a file turning unreadable, or readable again, moves no other image. Every one of
    `classes` (the task's) must have enough images too, not only those that occur.
    """
    if not 0 < test_fraction < 1 or not 0 <= val_fraction < 1:
        raise SplitError(f"fractions must be in (0, 1): test {test_fraction}, val {val_fraction}")
    minimum = minimum_class_size(val_fraction)
    counts = Counter(dict.fromkeys(classes, 0))
    counts.update(sample.label for sample in samples)
    for label, count in sorted(counts.items()):
        if count < minimum:
            raise SplitError(
                f"class {label!r} has {count} image(s): at least {minimum} are needed "
                "to put one in each split"
            )
    kept = {sample.path for sample in samples}
    groups = _groups_by_class([*samples, *(s for s in left_out if s.path not in kept)])
    assignment: dict[str, str] = {}
    for label in sorted(groups):
        order = sorted(groups[label], key=lambda group: _draw_key(seed, group))
        sizes = {group: len(groups[label][group]) for group in order}
        total = sum(sizes.values())
        test = _take(order, sizes, max(1, round(test_fraction * total)))
        rest = [group for group in order if group not in test]
        val: set[str] = set()
        if val_fraction > 0:
            rest_total = sum(sizes[group] for group in rest)
            val = _take(rest, sizes, max(1, round(val_fraction * rest_total)))
        for group in order:
            split = "test" if group in test else "val" if group in val else "train"
            for path in groups[label][group]:
                if path in kept:
                    assignment[path] = split
    _check_every_split_has_each_class(samples, assignment, val_fraction > 0)
    return assignment


def _draw_key(seed: int, group: str) -> bytes:
    """A group's place in every task's draw: pseudo-random, fixed by the seed and the group."""
    return hashlib.sha256(f"{seed}|{group}".encode()).digest()


def minimum_class_size(val_fraction: float) -> int:
    """Images a class needs so that each split gets one: train, test and val if it is used."""
    return 3 if val_fraction > 0 else 2


def _check_every_split_has_each_class(
    samples: Sequence[Sample], assignment: dict[str, str], with_val: bool
) -> None:
    """Refuse a split where a class has no image in one split (too few groups, or files left
    out as unreadable held its share)."""
    present = {(sample.label, assignment[sample.path]) for sample in samples}
    for label in sorted({sample.label for sample in samples}):
        for split in SPLITS if with_val else ("train", "test"):
            if (label, split) not in present:
                raise SplitError(
                    f"class {label!r} has no image in the {split} split: its images form too "
                    "few groups (object_id, duplicates), or unreadable files left out "
                    "(skipped.csv) held its share"
                )


def _groups_by_class(samples: Sequence[Sample]) -> dict[str, dict[str, list[str]]]:
    """`{label: {group: [paths]}}`, a group filed under its most frequent label."""
    members: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        members[sample.group].append(sample)
    by_class: dict[str, dict[str, list[str]]] = defaultdict(dict)
    for group, group_samples in members.items():
        counts = Counter(sample.label for sample in group_samples)
        # Most frequent label; ties broken by name so the result never depends on order.
        label = min(counts, key=lambda name: (-counts[name], name))
        by_class[label][group] = sorted(sample.path for sample in group_samples)
    return by_class


def _take(order: list[str], sizes: dict[str, int], target: int) -> set[str]:
    """Groups from `order` whose sizes add up to `target` images, or as near as fits."""
    taken, count = set(), 0
    for group in order:
        if count + sizes[group] <= target:
            taken.add(group)
            count += sizes[group]
        if count == target:
            break
    if not taken:  # every group is larger than the target: take the first one whole
        taken.add(order[0])
    return taken


def write_split(path: str | Path, samples: Iterable[Sample], assignment: dict[str, str]) -> None:
    """Write `split.csv` atomically: a kill mid-write leaves any earlier file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with temporary.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(SPLIT_COLUMNS)
        for sample in sorted(samples, key=lambda s: s.path):
            writer.writerow([sample.path, sample.label, sample.group, assignment[sample.path]])
    os.replace(temporary, path)


def read_split(path: str | Path) -> dict[str, list[Sample]]:
    """Read `split.csv` back as `{split: [samples]}`."""
    parts: dict[str, list[Sample]] = {name: [] for name in SPLITS}
    with Path(path).open(newline="") as handle:
        for row in csv.DictReader(handle):
            parts[row["split"]].append(Sample(row["path"], row["label"], row["group"]))
    return parts
