"""make_split: the one way a collection becomes a run's split (training and evaluations)."""

import csv
from pathlib import Path

import pytest
from PIL import Image

from significance.data import run_split
from significance.data.datamodule import ArtworkDataModule, LoaderSettings
from significance.data.run_split import (
    CollectionSettings,
    SplitSettings,
    draw_split,
    make_split,
)
from significance.data.split import read_split
from significance.data.transforms import Preprocessing
from significance.tasks import Task

MATERIAL = Task("coins/material", 2, "coins", "material", ("gold", "silver", "other"))


def small_collection(root: Path, per_class: int = 10) -> CollectionSettings:
    """`per_class` distinct images of each material and one broken file, in a table."""
    root.mkdir(parents=True)
    rows = []
    for index in range(per_class * len(MATERIAL.classes)):
        label = MATERIAL.classes[index % len(MATERIAL.classes)]
        Image.new("RGB", (16, 12), (index * 7 % 256, index * 13 % 256, 90)).save(
            root / f"{index}.png"
        )
        rows.append((f"{index}.png", "coins", label))
    (root / "broken.png").write_bytes(b"not an image")
    rows.append(("broken.png", "coins", "gold"))
    with (root / "annotations.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([("path", "artwork_type", "material"), *rows])
    return CollectionSettings(root)


def test_a_drawn_split_is_written_with_the_files_left_out(tmp_path: Path):
    collection = small_collection(tmp_path / "collection")
    made = make_split(tmp_path / "run" / "split.csv", collection, MATERIAL, SplitSettings(seed=1))
    written = read_split(tmp_path / "run" / "split.csv")
    assert {s.path: name for name, part in written.items() for s in part} == made.assignment
    assert set(made.assignment.values()) == {"train", "val", "test"} and made.excluded == 0
    assert all(s.sha256 for s in made.samples)
    with (tmp_path / "run" / "skipped.csv").open() as handle:
        assert [row["path"] for row in csv.DictReader(handle)] == ["broken.png"]
    # The split drawn from the samples is the collection's one draw, whatever calls it.
    again, _ = draw_split(collection, MATERIAL, made.samples, SplitSettings(seed=1))
    assert again == made.assignment


def test_without_a_draw_every_image_is_a_test_image_less_those_seen(tmp_path: Path):
    collection = small_collection(tmp_path / "collection")
    everything = make_split(tmp_path / "all" / "split.csv", collection, MATERIAL)
    assert set(everything.assignment.values()) == {"test"} and len(everything.samples) == 30
    seen = {sample.sha256 for sample in everything.samples[:4]}
    unseen = make_split(tmp_path / "unseen" / "split.csv", collection, MATERIAL, seen=seen)
    assert unseen.excluded == 4 and len(unseen.samples) == 26
    assert len(read_split(tmp_path / "unseen" / "split.csv")["test"]) == 26


def test_collection_settings_from_a_data_config():
    demo = CollectionSettings.from_config(
        {"root": None, "demo_dir": "d/study", "demo_scale": "study"}
    )
    assert (demo.root, demo.demo_scale) == (Path("d/study"), "study")
    given = CollectionSettings.from_config(
        {"root": "museum", "layout": None, "annotations_file": None}, facts_file="facts.sqlite"
    )
    assert given == CollectionSettings(Path("museum"), facts_file=Path("facts.sqlite"))


def test_the_split_is_made_once_and_every_later_process_reads_it(tmp_path: Path, monkeypatch):
    collection = small_collection(tmp_path / "collection")
    arguments = (MATERIAL, Preprocessing(8, (0.5,) * 3, (0.5,) * 3), tmp_path / "split.csv")
    first = ArtworkDataModule(*arguments, collection, loader=LoaderSettings(cache=False))
    first.prepare_data()
    first.setup()
    # Another rank (or a resumed run): reads the split, even with another seed, never redraws.
    monkeypatch.setattr(run_split, "index_collection", lambda *a: pytest.fail("indexed again"))
    other = ArtworkDataModule(
        *arguments, collection, SplitSettings(seed=9), LoaderSettings(cache=False)
    )
    other.prepare_data()
    other.setup()
    for name in ("train", "val", "test"):
        assert other.datasets[name].samples == first.datasets[name].samples


def test_a_demo_scale_that_does_not_exist_fails_at_once():
    with pytest.raises(ValueError, match=r"data\.demo_scale must be one of"):
        CollectionSettings.from_config({"root": None, "demo_scale": "huge"})
