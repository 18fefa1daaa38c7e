import logging
import random
from collections import Counter
from pathlib import Path

import pytest
from conftest import CONF_DIR

from significance.data.collection import Sample, index_collection
from significance.data.run_split import CollectionSettings, SplitSettings, draw_split, log_split
from significance.data.split import (
    class_shares,
    read_split,
    split_collection,
    split_stratified,
    split_targets,
    write_split,
)
from significance.errors import SplitError
from significance.tasks import discover_tasks


def make_samples(counts: dict[str, int], group_size: int = 1) -> list[Sample]:
    samples = []
    for label, count in counts.items():
        for index in range(count):
            samples.append(
                Sample(f"{label}/{index:04d}.jpg", label, f"{label}-{index // group_size}")
            )
    return samples


COUNTS = {"gold": 83, "silver": 40, "other": 17}


def test_every_class_keeps_its_share_to_within_one_image():
    samples = make_samples(COUNTS)
    assignment = split_stratified(samples, test_fraction=0.2, val_fraction=0.1, seed=3)
    per_split = Counter((s.label, assignment[s.path]) for s in samples)
    for label, total in COUNTS.items():
        assert abs(per_split[label, "test"] - 0.2 * total) <= 1
        train_part = total - per_split[label, "test"]
        assert abs(per_split[label, "val"] - 0.1 * train_part) <= 1
        assert (
            per_split[label, "train"] + per_split[label, "val"] + per_split[label, "test"] == total
        )


def test_splits_are_disjoint_and_cover_every_sample():
    samples = make_samples(COUNTS)
    assignment = split_stratified(samples, seed=0)
    assert set(assignment) == {s.path for s in samples}
    assert set(assignment.values()) == {"train", "val", "test"}


def test_samples_of_one_object_never_straddle_splits():
    samples = make_samples(COUNTS, group_size=3)
    assignment = split_stratified(samples, seed=1)
    splits_of_group: dict[str, set[str]] = {}
    for sample in samples:
        splits_of_group.setdefault(sample.group, set()).add(assignment[sample.path])
    assert all(len(splits) == 1 for splits in splits_of_group.values())
    assert {"train", "val", "test"} <= set(assignment.values())


def test_split_is_independent_of_listing_order_and_repeatable():
    samples = make_samples(COUNTS)
    shuffled = samples[:]
    random.Random(7).shuffle(shuffled)
    assert split_stratified(samples, seed=5) == split_stratified(shuffled, seed=5)


def test_split_depends_on_the_seed():
    samples = make_samples(COUNTS)
    assert split_stratified(samples, seed=1) != split_stratified(samples, seed=0)


def test_two_tasks_of_one_collection_share_their_test_images():
    # The same 300 photographs labelled for two tasks with different classes.
    groups = [f"object-{index:03d}" for index in range(300)]
    material = [
        Sample(f"{g}.jpg", ("gold", "silver", "other")[i % 3], g) for i, g in enumerate(groups)
    ]
    period = [Sample(f"{g}.jpg", ("ancient", "modern")[i % 7 % 2], g) for i, g in enumerate(groups)]
    # One assignment for the collection: every image with its label in every task.
    collection = [
        Sample(s.path, f"{task}={s.label}", s.group)
        for task, samples in (("material", material), ("period", period))
        for s in samples
    ]
    drawn = split_collection(collection, 0.2, 0.1, seed=2)
    tests = [
        {
            path
            for path, split in split_stratified(task, seed=2, collection_split=drawn).items()
            if split == "test"
        }
        for task in (material, period)
    ]
    assert tests[0] == tests[1] and len(tests[0]) == 60


def _manuscripts(seed: int, count: int = 60) -> list[Sample]:
    """`count` manuscripts of 2 to 10 pages, each mostly of one class, some pages of another."""
    rng = random.Random(seed)
    classes = ("figure", "text", "text&figure")
    samples = []
    for book in range(count):
        main = classes[book % 3]
        for page in range(rng.randint(2, 10)):
            label = main if rng.random() < 0.8 else rng.choice(classes)
            samples.append(Sample(f"book{book:02d}/p{page}.jpg", label, f"book{book:02d}"))
    return samples


@pytest.mark.parametrize("test_fraction", [0.2, 0.25, 0.15])
def test_groups_of_mixed_labels_keep_every_class_share_in_every_split(test_fraction: float):
    for seed in range(8):
        samples = _manuscripts(seed)
        assignment = split_stratified(samples, test_fraction=test_fraction, seed=seed)
        targets = split_targets(test_fraction, 0.1)
        for label, shares in class_shares(samples, assignment).items():
            assert abs(shares["test"] - test_fraction) <= 0.025, (seed, label, shares)
            assert abs(shares["train"] - targets["train"]) <= 0.04, (seed, label, shares)
            assert shares["val"] > 0, (seed, label, shares)


def test_a_class_whose_groups_cannot_be_split_is_refused_clearly():
    # Three images of 'rare', all pages of one manuscript: they cannot be in three splits.
    samples = make_samples({"common": 30}) + [
        Sample(f"rare/{page}.jpg", "rare", "one-book") for page in range(3)
    ]
    with pytest.raises(SplitError, match="'rare' has no image in the"):
        split_stratified(samples)


def test_a_class_too_small_to_split_is_refused_with_its_name():
    with pytest.raises(SplitError, match="'rare' has 2 image"):
        split_stratified(make_samples({"common": 50, "rare": 2}))


def test_split_file_round_trip(tmp_path: Path):
    samples = make_samples(COUNTS)
    assignment = split_stratified(samples, seed=0)
    write_split(tmp_path / "split.csv", samples, assignment)
    parts = read_split(tmp_path / "split.csv")
    assert {s.path: name for name, part in parts.items() for s in part} == assignment
    assert sorted(s for part in parts.values() for s in part) == sorted(samples)


def test_an_unreadable_file_moves_no_other_image():
    samples = make_samples(COUNTS, group_size=2)
    everything = split_stratified(samples, seed=4)
    # Not 'other/0016.jpg': a group of one, the only val image of its class at this seed.
    broken = [samples[0], samples[57], samples[-3]]
    readable = [s for s in samples if s not in broken]
    assignment = split_stratified(readable, seed=4, left_out=broken)
    assert assignment == {s.path: everything[s.path] for s in readable}
    # Without holding their place, the draw changes for images that did nothing.
    assert split_stratified(readable, seed=4) != assignment


def test_a_class_emptied_from_a_split_by_unreadable_files_is_refused():
    samples = make_samples({"common": 30, "rare": 4})
    everything = split_stratified(samples, seed=0)
    rare_test = [s for s in samples if s.label == "rare" and everything[s.path] == "test"]
    readable = [s for s in samples if s not in rare_test]
    with pytest.raises(SplitError, match="'rare' has no image in the test split"):
        split_stratified(readable, seed=0, left_out=rare_test)


def test_a_class_of_the_task_without_images_is_refused():
    with pytest.raises(SplitError, match="class 'bronze' has 0 image"):
        split_stratified(make_samples({"gold": 10, "silver": 10}), classes=("gold", "bronze"))


def test_every_task_of_the_demo_tests_on_the_stage_one_test_images_of_its_type(demo_dir: Path):
    # What the end-to-end evaluation rests on: stage 2 is scored on stage 1's test images.
    tasks = discover_tasks(CONF_DIR)
    splits = {}
    for task in tasks.values():
        samples, _ = index_collection(demo_dir, "annotations", task, group_duplicates=True)
        draw = SplitSettings(tasks=tuple(tasks.values()))
        splits[task.id], _ = draw_split(CollectionSettings(demo_dir), task, samples, draw)
    stage_one = splits["artefact"]
    for task in tasks.values():
        if task.stage != 2:
            continue
        tested = [p for p, split in splits[task.id].items() if stage_one[p] == "test"]
        shared = sum(splits[task.id][path] == "test" for path in tested)
        assert tested and shared >= 0.9 * len(tested), task.id


def test_the_split_log_gives_each_class_share_and_the_shared_test_images(demo_dir, caplog):
    tasks = list(discover_tasks(CONF_DIR).values())
    task = next(t for t in tasks if t.id == "coins/material")
    samples, _ = index_collection(demo_dir, "annotations", task)
    draw = SplitSettings(tasks=tuple(tasks))
    assignment, drawn = draw_split(CollectionSettings(demo_dir), task, samples, draw)
    with caplog.at_level(logging.INFO, logger="significance.data.run_split"):
        log_split(task, samples, assignment, drawn, Path("split.csv"))
    assert "class gold: train" in caplog.text and "test 2" in caplog.text
    assert "100.0% of the collection's test images labelled for coins/material" in caplog.text
