"""Cross-validation folds: group-aware, stratified, one assignment per collection and seed."""

import random
import re
from collections import Counter

import pytest

from significance.data.collection import Sample
from significance.data.folds import (
    check_fold_groups,
    cross_validation_split,
    fold_collection,
    fold_problems,
)
from significance.data.run_split import SplitSettings
from significance.data.split import split_stratified
from significance.errors import SplitError

FOLDS = 5


def catalogue(seed: int = 0, objects: int = 240) -> dict[str, list[Sample]]:
    """Two tasks labelling one collection of objects photographed 1 to 4 times, imbalanced
    (gold a tenth of the coins); `{task: samples}`, each object a group."""
    rng = random.Random(seed)
    tasks: dict[str, list[Sample]] = {"material": [], "period": []}
    for number in range(objects):
        material = rng.choice(["gold"] + ["silver"] * 6 + ["bronze"] * 3)
        period = rng.choice(["roman", "greek", "byzantine"])
        for photo in range(rng.randint(1, 4)):
            path, group = f"object{number:03d}/{photo}.jpg", f"object{number:03d}"
            tasks["material"].append(Sample(path, material, group))
            tasks["period"].append(Sample(path, period, group))
    return tasks


def collection_labels(tasks: dict[str, list[Sample]]) -> list[Sample]:
    """Every image once per task, labelled `<task>=<class>`, as `collection_labels` gives."""
    return [Sample(s.path, f"{t}={s.label}", s.group) for t, ss in tasks.items() for s in ss]


def task_folds(tasks: dict[str, list[Sample]], seed: int = 0) -> dict[str, dict[str, int]]:
    """`{task: {path: the fold whose run tests on it}}`, through each fold's run split."""
    labels = collection_labels(tasks)
    folds: dict[str, dict[str, int]] = {task: {} for task in tasks}
    for fold in range(FOLDS):
        drawn = cross_validation_split(labels, FOLDS, fold, 0.1, seed)
        for task, samples in tasks.items():
            split = split_stratified(samples, 1 / FOLDS, 0.1, seed, collection_split=drawn)
            for path, name in split.items():
                if name == "test":
                    assert path not in folds[task], f"{path} tested in two folds"
                    folds[task][path] = fold
    return folds


def test_every_image_is_tested_in_exactly_one_fold_and_groups_never_straddle():
    tasks = catalogue()
    folds = task_folds(tasks)
    for task, samples in tasks.items():
        assert set(folds[task]) == {s.path for s in samples}, task
        by_group: dict[str, set[int]] = {}
        for sample in samples:
            by_group.setdefault(sample.group, set()).add(folds[task][sample.path])
        assert all(len(held) == 1 for held in by_group.values()), task


def test_one_assignment_serves_every_task_of_the_collection():
    folds = task_folds(catalogue())
    assert folds["material"] == folds["period"]


def test_every_class_keeps_its_share_in_every_fold():
    tasks = catalogue()
    folds = fold_collection(collection_labels(tasks), FOLDS, seed=3)
    for task, samples in tasks.items():
        totals = Counter(s.label for s in samples)
        placed = Counter((s.label, folds[s.path]) for s in samples)
        for label, total in totals.items():
            for fold in range(FOLDS):
                share = placed[label, fold] / total
                # Objects of up to 4 photos: a share can miss 1/K by about one object.
                assert abs(share - 1 / FOLDS) <= 4 / total + 0.01, (task, label, fold, share)


def test_validation_is_carved_from_the_training_folds_stratified():
    tasks = catalogue()
    split = cross_validation_split(collection_labels(tasks), FOLDS, 1, 0.1, seed=0)
    samples = tasks["material"]
    for label in ("gold", "silver", "bronze"):
        placed = Counter(split[s.path] for s in samples if s.label == label)
        training = placed["train"] + placed["val"]
        assert placed["val"] > 0 and abs(placed["val"] / training - 0.1) <= 0.06, (label, placed)


def test_folds_depend_on_the_seed_alone_not_the_order():
    labels = collection_labels(catalogue())
    shuffled = labels[:]
    random.Random(1).shuffle(shuffled)
    assert fold_collection(labels, FOLDS, 7) == fold_collection(shuffled, FOLDS, 7)
    assert fold_collection(labels, FOLDS, 7) != fold_collection(labels, FOLDS, 8)


def test_a_near_duplicate_group_across_objects_stays_in_one_fold():
    tasks = catalogue(objects=60)
    # The task's duplicate grouping joins two objects the collection draws apart.
    joined = [
        Sample(s.path, s.label, "object000" if s.group == "object001" else s.group)
        for s in tasks["material"]
    ]
    seen: dict[str, int] = {}
    labels = collection_labels(tasks)
    for fold in range(FOLDS):
        drawn = cross_validation_split(labels, FOLDS, fold, 0.1, 0)
        split = split_stratified(joined, 1 / FOLDS, 0.1, 0, collection_split=drawn)
        seen.update({path: fold for path, name in split.items() if name == "test"})
    assert len({seen[s.path] for s in joined if s.group == "object000"}) == 1
    assert len(seen) == len(joined)


@pytest.mark.parametrize(
    ("folds", "fold", "message"),
    [
        (5, 5, "data.fold must be one of 0..4 with data.folds=5, got 5"),
        (1, 0, "data.folds must be an integer of at least 2"),
        (None, 2, "data.fold=2 needs data.folds=K"),
        (3, None, "data.folds=3 needs data.fold=<0..2>"),
    ],
)
def test_impossible_fold_settings_are_refused_in_one_line(folds, fold, message):
    (problem,) = fold_problems(folds, fold)
    assert problem.startswith(message) and "\n" not in problem
    with pytest.raises(SplitError, match=re.escape(message)):
        SplitSettings(folds=folds, fold=fold)


def test_no_folds_is_the_train_val_test_split():
    assert fold_problems(None, None) == [] and SplitSettings().fold_name == ""
    assert SplitSettings(folds=5, fold=2).fold_name == "fold 2 of 5"


def test_a_class_with_fewer_groups_than_folds_is_refused_with_its_name():
    samples = [Sample(f"c/{i}.jpg", "common", f"c{i}") for i in range(40)]
    samples += [Sample(f"r/{i}.jpg", "rare", f"book{i % 3}") for i in range(9)]
    with pytest.raises(SplitError, match=r"class 'rare' has 3 group.*5 folds need at least 5"):
        check_fold_groups(samples, ("common", "rare"), 5)
    check_fold_groups(samples, ("common", "rare"), 3)
    with pytest.raises(SplitError, match="class 'absent' has 0 group"):
        check_fold_groups(samples, ("common", "rare", "absent"), 3)
