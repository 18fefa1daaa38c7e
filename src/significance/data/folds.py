"""Group-aware stratified k-fold cross-validation: one fold assignment per collection and seed.

`data.folds=K data.fold=i`: the collection's groups are dealt into K folds of 1/K of every
class of every task (`assign_groups`, the machinery of the train/val/test split), fold i is
the test split, and validation is carved out of the other folds as without folds
(`val_fraction` of them, stratified, groups kept).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from significance.data.collection import Sample
from significance.data.split import assign_groups
from significance.errors import SplitError


def fold_problems(folds: Any, fold: Any) -> list[str]:
    """What is wrong with `data.folds` and `data.fold` (nothing when both are unset)."""
    if folds is None:
        return [] if fold is None else [f"data.fold={fold} needs data.folds=K (cross-validation)"]
    if not _is_int(folds) or folds < 2:
        return [f"data.folds must be an integer of at least 2 (null: no folds), got {folds!r}"]
    if fold is None:
        return [f"data.folds={folds} needs data.fold=<0..{folds - 1}> (-m: 'range({folds})')"]
    if not _is_int(fold) or not 0 <= fold < folds:
        return [f"data.fold must be one of 0..{folds - 1} with data.folds={folds}, got {fold!r}"]
    return []


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def fold_collection(images: Sequence[Sample], folds: int, seed: int) -> dict[str, int]:
    """`{path: fold}` for every image: its group's fold, each fold 1/K of every label."""
    targets = {str(number): 1 / folds for number in range(folds)}
    return {path: int(part) for path, part in assign_groups(images, targets, seed).items()}


def cross_validation_split(
    images: Sequence[Sample], folds: int, fold: int, val_fraction: float, seed: int
) -> dict[str, str]:
    """`{path: split}` of one fold: its images are the test split, the other folds' images are
    train and val (`val_fraction` of them, stratified on every label, groups kept)."""
    fold_of = fold_collection(images, folds, seed)
    training = [image for image in images if fold_of[image.path] != fold]
    carved = assign_groups(training, {"train": 1 - val_fraction, "val": val_fraction}, seed)
    return {path: "test" if number == fold else carved[path] for path, number in fold_of.items()}


def check_fold_groups(samples: Sequence[Sample], classes: Sequence[str], folds: int) -> None:
    """Refuse a class of the task whose images form fewer groups than there are folds."""
    groups: dict[str, set[str]] = {label: set() for label in classes}
    for sample in samples:
        groups.setdefault(sample.label, set()).add(sample.group)
    for label, held in sorted(groups.items()):
        if len(held) < folds:
            raise SplitError(
                f"class {label!r} has {len(held)} group(s) of images (object_id, duplicates): "
                f"{folds} folds need at least {folds}"
            )
