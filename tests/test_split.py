import random
from collections import Counter
from pathlib import Path

import pytest

from significance.data.collection import Sample
from significance.data.split import SplitError, read_split, split_stratified, write_split


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


def test_two_tasks_of_one_collection_share_nearly_all_their_test_images():
    # The same 300 photographs labelled for two tasks with different classes.
    groups = [f"object-{index:03d}" for index in range(300)]
    material = [
        Sample(f"{g}.jpg", ("gold", "silver", "other")[i % 3], g) for i, g in enumerate(groups)
    ]
    period = [Sample(f"{g}.jpg", ("ancient", "modern")[i % 7 % 2], g) for i, g in enumerate(groups)]
    tests = [
        {path for path, split in split_stratified(task, seed=2).items() if split == "test"}
        for task in (material, period)
    ]
    # Drawn independently per task, about a fifth of one test split would be in the other.
    assert len(tests[0] & tests[1]) >= 0.85 * min(map(len, tests))


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
    broken = [samples[0], samples[57], samples[-1]]
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
