"""Stratified, group-aware train/validation/test splits, written down once per run."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from significance.data.collection import Sample
from significance.errors import SplitError
from significance.files import atomic_write

SPLITS = ("train", "val", "test")
SPLIT_COLUMNS = ("path", "label", "group", "split", "sha256")
# The first line of split.csv since format 2 (the SHA-256 column); format 1 files lack it.
SPLIT_FORMAT = 2
FORMAT_LINE = f"# significance split format {SPLIT_FORMAT}"


def split_stratified(
    samples: Sequence[Sample],
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
    seed: int = 0,
    left_out: Sequence[Sample] = (),
    classes: Sequence[str] = (),
    collection_split: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Assign every sample of one task to train, val or test; returns `{path: split}`.

    Test takes `test_fraction` of every class, validation `val_fraction` of what is left for
    training, each class's share kept as closely as its groups allow, and at least one image
    per class each. Samples that share a group go to one split together. The result depends
    only on the samples and `seed`, never on their order.

    `collection_split` is the assignment of the whole collection (`split_collection`, or a
    fold's `cross_validation_split`, of every image with its label in every task), so that all
    tasks of one collection share their test images; without it, this task's samples are
    assigned alone. A task's groups that join several collection groups (near-duplicates)
    follow the split of their first member in the seed's order. `left_out` samples (unreadable
    files) take part in the draw but are not assigned, so that a file turning unreadable moves
    no other image. Every one of `classes` (the task's) must have enough images too.
    """
    if not 0 < test_fraction < 1 or not 0 <= val_fraction < 1:
        raise SplitError(f"fractions must be in (0, 1): test {test_fraction}, val {val_fraction}")
    _check_class_sizes(samples, classes, minimum_class_size(val_fraction))
    by_path = collection_split
    if by_path is None:
        by_path = split_collection([*samples, *left_out], test_fraction, val_fraction, seed)
    missing = sorted({s.path for s in samples} - set(by_path))
    if missing:
        raise SplitError(f"{len(missing)} image(s) of the task are not in the collection's draw")
    assignment = _keep_groups_together(samples, by_path, seed)
    _check_every_split_has_each_class(samples, assignment, val_fraction > 0)
    return assignment


def split_collection(
    images: Sequence[Sample], test_fraction: float, val_fraction: float, seed: int
) -> dict[str, str]:
    """`{path: split}` for every image: its group's train, val or test split (`assign_groups`)."""
    return assign_groups(images, split_targets(test_fraction, val_fraction), seed)


def assign_groups(
    images: Sequence[Sample], targets: Mapping[str, float], seed: int
) -> dict[str, str]:
    """`{path: part}` for every image: its group's part, stratified on every label at once.

    `targets`: each part's share of every stratum (the splits, or K folds of 1/K each).
    `images` may list a path once per label it carries (one per task); a label is a stratum.
    Groups are taken in an order set by the seed and the group alone, each put where it
    brings every stratum it holds nearest its target share (the sum of squared share errors
    grows least), then parts a stratum misses get one of its groups where it has enough.
    Iterative stratification in the manner of Sechidis et al. (2011).
    """
    strata: dict[str, Counter[str]] = defaultdict(Counter)
    paths: dict[str, set[str]] = defaultdict(set)
    for image in images:
        strata[image.group][image.label] += 1
        paths[image.group].add(image.path)
    totals: Counter[str] = Counter()
    for counts in strata.values():
        totals.update(counts)
    counts = {split: Counter() for split in targets}
    group_split: dict[str, str] = {}
    for group in _largest_first(strata, seed):
        best = min(
            targets,
            key=lambda split: _share_error_change(
                counts[split], strata[group], totals, targets[split]
            ),
        )
        counts[best].update(strata[group])
        group_split[group] = best
    _improve_by_moves(group_split, strata, totals, targets, counts, seed)
    _give_every_split_each_stratum(group_split, strata, totals, targets, counts)
    return {path: group_split[group] for group, members in paths.items() for path in members}


def split_targets(test_fraction: float, val_fraction: float) -> dict[str, float]:
    """Each split's share of every class: validation is carved out of the training part."""
    return {
        "train": (1 - test_fraction) * (1 - val_fraction),
        "val": (1 - test_fraction) * val_fraction,
        "test": test_fraction,
    }


def _share_error_change(
    counts: Counter[str], group: Counter[str], totals: Counter[str], target: float
) -> float:
    """How much the squared error of a split's shares grows if `group` joins it."""
    change = 0.0
    for stratum, added in group.items():
        before = counts[stratum] / totals[stratum] - target
        after = (counts[stratum] + added) / totals[stratum] - target
        change += after * after - before * before
    return change


def _largest_first(strata: dict[str, Counter[str]], seed: int) -> list[str]:
    """Groups by size, largest first (they fit only early); equal sizes in the seed's order."""
    return sorted(strata, key=lambda group: (-sum(strata[group].values()), _draw_key(seed, group)))


def _improve_by_moves(
    group_split: dict[str, str],
    strata: dict[str, Counter[str]],
    totals: Counter[str],
    targets: Mapping[str, float],
    counts: dict[str, Counter[str]],
    seed: int,
    passes: int = 20,
) -> None:
    """Move single groups to another split while that lowers the total squared share error."""
    order = _largest_first(strata, seed)
    for _ in range(passes):
        moved = False
        for group in order:
            here = group_split[group]
            changes = {
                split: _move_cost(group, split, group_split, strata, totals, targets, counts)
                for split in targets
                if split != here
            }
            best = min(changes, key=changes.get)
            if changes[best] < -1e-12:
                counts[here].subtract(strata[group])
                counts[best].update(strata[group])
                group_split[group] = best
                moved = True
        if not moved:
            return


def _give_every_split_each_stratum(
    group_split: dict[str, str],
    strata: dict[str, Counter[str]],
    totals: Counter[str],
    targets: Mapping[str, float],
    counts: dict[str, Counter[str]],
) -> None:
    """Give each part a stratum misses one of its groups: the cheapest move from a part of two."""
    for stratum in sorted(totals):
        holders = sorted(group for group, held in strata.items() if stratum in held)
        for split in (name for name, share in targets.items() if share > 0):
            by_split = Counter(group_split[group] for group in holders)
            movable = [group for group in holders if by_split[group_split[group]] > 1]
            if by_split[split] or not movable:
                continue
            group = min(
                movable,
                key=lambda name: _move_cost(
                    name, split, group_split, strata, totals, targets, counts
                ),
            )
            counts[group_split[group]].subtract(strata[group])
            counts[split].update(strata[group])
            group_split[group] = split


def _move_cost(
    group: str,
    split: str,
    group_split: dict[str, str],
    strata: dict[str, Counter[str]],
    totals: Counter[str],
    targets: Mapping[str, float],
    counts: dict[str, Counter[str]],
) -> float:
    """The change of the total squared share error if `group` moves to `split`."""
    here = group_split[group]
    removal = -_share_error_change(
        counts[here] - strata[group], strata[group], totals, targets[here]
    )
    return removal + _share_error_change(counts[split], strata[group], totals, targets[split])


def _keep_groups_together(
    samples: Sequence[Sample], by_path: dict[str, str], seed: int
) -> dict[str, str]:
    """The task's samples in their collection split, a task group wholly in its first's."""
    members: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        members[sample.group].append(sample)
    assignment = {}
    for group_samples in members.values():
        first = min(group_samples, key=lambda sample: (_draw_key(seed, sample.path), sample.path))
        for sample in group_samples:
            assignment[sample.path] = by_path[first.path]
    return assignment


def _check_class_sizes(samples: Sequence[Sample], classes: Sequence[str], minimum: int) -> None:
    """Refuse a class (of the samples or of the task) with fewer images than the splits need."""
    counts = Counter(dict.fromkeys(classes, 0))
    counts.update(sample.label for sample in samples)
    for label, count in sorted(counts.items()):
        if count < minimum:
            raise SplitError(
                f"class {label!r} has {count} image(s): at least {minimum} are needed "
                "to put one in each split"
            )


def _draw_key(seed: int, group: str) -> bytes:
    """A group's place in every task's draw: pseudo-random, fixed by the seed and the group."""
    return hashlib.sha256(f"{seed}|{group}".encode()).digest()


def minimum_class_size(val_fraction: float) -> int:
    """Images a class needs so that each split gets one: train, test and val if it is used."""
    return 3 if val_fraction > 0 else 2


def _check_every_split_has_each_class(
    samples: Sequence[Sample], assignment: dict[str, str], with_val: bool
) -> None:
    """Refuse a class with no image in a split (too few groups, or unreadable files held it)."""
    present = {(sample.label, assignment[sample.path]) for sample in samples}
    for label in sorted({sample.label for sample in samples}):
        for split in SPLITS if with_val else ("train", "test"):
            if (label, split) not in present:
                raise SplitError(
                    f"class {label!r} has no image in the {split} split: its images form too "
                    "few groups (object_id, duplicates), or unreadable files left out "
                    "(skipped.csv) held its share"
                )


def test_overlap(
    samples: Sequence[Sample], assignment: Mapping[str, str], collection_split: Mapping[str, str]
) -> float:
    """The share of the task's images in the collection's test split that its test split
    holds too (1.0 unless near-duplicate groups moved some)."""
    tested = [s.path for s in samples if collection_split.get(s.path) == "test"]
    if not tested:
        return 1.0
    return sum(assignment[path] == "test" for path in tested) / len(tested)


def class_shares(samples: Sequence[Sample], assignment: dict[str, str]) -> dict[str, dict]:
    """`{class: {split: share of the class's images}}`, as achieved by `assignment`."""
    totals = Counter(sample.label for sample in samples)
    placed = Counter((sample.label, assignment[sample.path]) for sample in samples)
    return {
        label: {split: placed[label, split] / total for split in SPLITS}
        for label, total in sorted(totals.items())
    }


def write_split(path: str | Path, samples: Iterable[Sample], assignment: dict[str, str]) -> None:
    """Write `split.csv` atomically: a kill mid-write leaves any earlier file intact.

    Each image's SHA-256 goes with it, so that the images a model saw are known by content
    wherever the split file or the collection goes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, newline="") as handle:
        handle.write(FORMAT_LINE + "\n")
        writer = csv.writer(handle)
        writer.writerow(SPLIT_COLUMNS)
        for sample in sorted(samples, key=lambda s: s.path):
            row = [sample.path, sample.label, sample.group, assignment[sample.path], sample.sha256]
            writer.writerow(row)


def read_split(path: str | Path) -> dict[str, list[Sample]]:
    """Read `split.csv` back as `{split: [samples]}` (a format-1 file: no SHA-256)."""
    parts: dict[str, list[Sample]] = {name: [] for name in SPLITS}
    with Path(path).open(newline="") as handle:
        rows = (line for line in handle if not line.startswith("#"))
        for row in csv.DictReader(rows):
            sample = Sample(row["path"], row["label"], row["group"], row.get("sha256") or "")
            parts[row["split"]].append(sample)
    return parts
