"""The two-stage pipeline: predict.py on new images, wrong slots, routing, end-to-end evaluation."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterable
from pathlib import Path

import pytest
import torch
from conftest import TASK_IDS, Sweep, assert_ok, run_script

from significance.data.images import image_pixels, load_image
from significance.data.split import read_split
from significance.data.transforms import Preprocessing, normalize
from significance.errors import PipelineError
from significance.pipeline import inference
from significance.pipeline.end_to_end import (
    evaluate_pipeline,
)
from significance.pipeline.loading import PipelineSpec, load_pipeline, spec_from_sweep
from significance.pipeline.predict import UNCERTAIN, predict

FIELDS = ("coins/material", "icons/location")


@pytest.fixture(scope="module")
def sweep_dir(all_tasks_sweep: Sweep) -> Path:
    """The session's tiny-model sweep of stage 1 and every field, as a user runs it."""
    return all_tasks_sweep.path


@pytest.fixture(scope="module")
def spec(sweep_dir: Path) -> PipelineSpec:
    """Stage 1 and the two fields of FIELDS, from the sweep."""
    every = spec_from_sweep(sweep_dir)
    fields = [task.split("/") for task in FIELDS]
    return PipelineSpec(every.stage1, {kind: {f: every.stage2[kind][f]} for kind, f in fields})


def trained_images(sweep: Sweep, tasks: Iterable[str]) -> set[str]:
    """The paths the sweep's models of `tasks` trained or validated on."""
    trained = set()
    for task in tasks:
        split = read_split(sweep.job_dir(task) / "split.csv")
        trained |= {s.path for name in ("train", "val") for s in split[name]}
    return trained


def demo_images(demo_dir: Path) -> dict[str, list[Path]]:
    """Demo image paths by artwork type, from the collection's table."""
    by_type: dict[str, list[Path]] = {}
    with (demo_dir / "annotations.csv").open() as handle:
        for row in csv.DictReader(handle):
            by_type.setdefault(row["artwork_type"], []).append(demo_dir / row["path"])
    return by_type


def record_calls(model: torch.nn.Module, calls: list[torch.Tensor]) -> None:
    """Keep the input of every call of `model`."""
    forward = model.forward

    def recording(images: torch.Tensor) -> torch.Tensor:
        calls.append(images)
        return forward(images)

    model.forward = recording


def images_seen(calls: list[torch.Tensor]) -> int:
    return sum(len(images) for images in calls)


def test_every_input_comes_back_once_in_order_with_errors(spec, demo_dir, tmp_path):
    images = demo_images(demo_dir)
    empty, broken = tmp_path / "empty.jpg", tmp_path / "broken.png"
    empty.touch()
    broken.write_text("not an image")
    order = [
        images["icons"][0],
        broken,
        images["coins"][0],
        empty,
        tmp_path / "missing.jpg",
        *images["others"][:3],
        images["coins"][1],
        *images["manuscripts"][:2],
    ]
    table = tmp_path / "inputs.csv"
    table.write_text("path\n" + "".join(f"{p}\n" for p in order))
    rows = predict(table, spec, tmp_path / "out", batch_size=4, num_workers=0, accelerator="cpu")
    written = list(csv.DictReader((tmp_path / "out" / "predictions.csv").open()))
    lines = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").open()]
    assert [r["path"] for r in written] == [r["path"] for r in lines] == [str(p) for p in order]
    errors = {Path(r["path"]).name: r["error"] for r in written if r["error"]}
    assert set(errors) == {"empty.jpg", "broken.png", "missing.jpg"}
    assert "empty file" in errors["empty.jpg"]
    assert "No such file" in errors["missing.jpg"]
    classes = ("coins", "frescoes", "icons", "manuscripts", "others")
    for row in rows:
        if row["error"]:
            assert row["artwork_type"] is None and all(row[task] is None for task in FIELDS)
            continue
        assert row["artwork_type"] in classes and 0 < row["artwork_type/probability"] <= 1
        for task in FIELDS:  # a field is filled exactly when stage 1 chose its type
            assert (row[task] is not None) == (row["artwork_type"] == task.split("/")[0])


def test_routing_sends_each_type_only_to_its_models(spec, demo_dir, tmp_path):
    pipeline = load_pipeline(spec, "cpu")
    images = demo_images(demo_dir)
    true_types = ["coins"] * 3 + ["icons"] * 2 + ["manuscripts"] * 2 + ["others"] * 2
    inputs = [images[t][i] for t, i in zip(true_types, [0, 1, 2, 0, 1, 0, 1, 0, 1], strict=True)]
    classes = pipeline.stage1.task.classes
    queue = list(true_types)

    def oracle(batch: torch.Tensor) -> torch.Tensor:  # stage 1 that is always right
        labels = [queue.pop(0) for _ in range(len(batch))]
        return torch.stack([torch.eye(len(classes))[classes.index(t)] * 10 for t in labels])

    pipeline.stage1.forward = oracle
    seen = {task: [] for task in FIELDS}
    for task in FIELDS:
        record_calls(pipeline.models()[task], seen[task])
    rows = predict(inputs, pipeline, tmp_path, batch_size=4, num_workers=0)
    assert images_seen(seen["coins/material"]) == 3 and images_seen(seen["icons/location"]) == 2
    assert [row["artwork_type"] for row in rows] == true_types
    for row, artwork_type in zip(rows, true_types, strict=True):
        assert (row["coins/material"] is not None) == (artwork_type == "coins")
        assert (row["icons/location"] is not None) == (artwork_type == "icons")


def test_thresholds_give_uncertain_and_stop_routing(spec, demo_dir, tmp_path):
    pipeline = load_pipeline(spec, "cpu")
    inputs = [p for paths in demo_images(demo_dir).values() for p in paths[:2]]
    seen: list[torch.Tensor] = []
    for task in FIELDS:
        record_calls(pipeline.models()[task], seen)
    rows = predict(inputs, pipeline, tmp_path / "a", stage1_threshold=1.01, num_workers=0)
    assert {row["artwork_type"] for row in rows} == {UNCERTAIN} and not seen
    assert all(row[task] is None for row in rows for task in FIELDS)
    rows = predict(inputs, pipeline, tmp_path / "b", stage2_threshold=1.01, num_workers=0)
    routed = [row for row in rows if row["artwork_type"] in ("coins", "icons")]
    assert routed and images_seen(seen) == len(routed)
    for row in routed:
        task = "coins/material" if row["artwork_type"] == "coins" else "icons/location"
        assert row[task] == UNCERTAIN and 0 < row[task + "/probability"] < 1.01


def test_checkpoint_in_wrong_slot_is_refused_before_any_image(
    spec, demo_dir, tmp_path, monkeypatch
):
    def no_image(*args, **kwargs):
        raise AssertionError("an image was read")

    monkeypatch.setattr(inference, "load_image", no_image)
    coins = spec.stage2["coins"]["material"]
    wrong_stage1 = PipelineSpec(stage1=coins)
    with pytest.raises(PipelineError, match="stage-1 slot") as error:
        predict(demo_dir, wrong_stage1, tmp_path)
    assert coins in str(error.value) and "coins/material" in str(error.value)
    swapped = PipelineSpec(stage1=spec.stage1, stage2={"icons": {"location": coins}})
    with pytest.raises(PipelineError, match="slot icons/location") as error:
        predict(demo_dir, swapped, tmp_path)
    assert coins in str(error.value) and "task coins/material" in str(error.value)
    assert not (tmp_path / "predictions.csv").exists()


def test_each_model_gets_its_own_preprocessing(spec, demo_dir, tmp_path):
    checkpoint = torch.load(spec.stage2["coins"]["material"], weights_only=True)
    other = {"image_size": 40, "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.3, 0.4]}
    checkpoint["hyper_parameters"]["preprocessing"] = other
    torch.save(checkpoint, tmp_path / "coins-40px.ckpt")
    pipeline = load_pipeline(
        PipelineSpec(spec.stage1, {"coins": {"material": str(tmp_path / "coins-40px.ckpt")}}),
        "cpu",
    )
    image = demo_images(demo_dir)["coins"][0]
    pipeline.stage1.forward = lambda x: torch.tensor([[9.0, 0, 0, 0, 0]] * len(x))  # coins
    inputs = {task: [] for task in pipeline.models()}
    for task, model in pipeline.models().items():
        record_calls(model, inputs[task])
    predict([image], pipeline, tmp_path / "out", num_workers=0)
    assert inputs["artefact"][0].shape[-2:] == (32, 32)
    pixels = torch.from_numpy(image_pixels(load_image(image, 40)))[None]
    expected = normalize(pixels, Preprocessing.from_dict(other))
    assert torch.allclose(inputs["coins/material"][0], expected)


def test_end_to_end_evaluation_on_images_no_model_trained_on(
    all_tasks_sweep, sweep_dir, demo_dir, tmp_path
):
    process = run_script(
        "evaluate.py",
        f"pipeline.from_sweep={sweep_dir}",
        "pipeline=default",
        f"data.root={demo_dir}",
        "num_workers=0",
        "accelerator=cpu",
        f"hydra.run.dir={tmp_path}",
    )
    assert_ok(process)
    metrics = json.loads((tmp_path / "pipeline_metrics.json").read_text())
    assert "| coins/material |" in (tmp_path / "pipeline_report.md").read_text()
    trained = trained_images(all_tasks_sweep, TASK_IDS)  # evaluate.py takes every task
    with (demo_dir / "annotations.csv").open() as handle:
        labelled = {row["path"] for row in csv.DictReader(handle)}
    assert metrics["images"] == len(labelled - trained)
    # One draw for all tasks: the test images of stage 1 are test images of the fields too.
    assert metrics["images"] >= 0.1 * len(labelled)
    assert metrics["excluded_trained_on"] == len(labelled & trained)
    for task in FIELDS:
        field = metrics["fields"][task]
        assert field["images"] > 0
        assert field["acc_end_to_end"] <= field["acc_true_type"]
        assert field["errors_end_to_end"] == field["images"] - field["correct_end_to_end"]
        assert field["errors_end_to_end"] == (
            field["errors_wrong_type"] + field["errors_field_model"]
        )
        assert field["errors_wrong_type_field_model_right"] <= field["errors_wrong_type"]
    # Threshold 0 answers everything; higher thresholds answer fewer, never more.
    for task, rows in metrics["thresholds"].items():
        assert rows[0]["threshold"] == 0.0 and rows[0]["coverage"] == 1.0, task
        answered = [row["answered"] for row in rows]
        assert answered == sorted(answered, reverse=True), task
    assert metrics["thresholds"]["artefact"][0]["acc"] == pytest.approx(metrics["stage1"]["acc"])
    assert "## Thresholds" in (tmp_path / "pipeline_report.md").read_text()


def test_end_to_end_evaluation_of_a_copy_leaves_out_the_same_images(
    all_tasks_sweep, spec, demo_dir, tmp_path
):
    # Matched by content: a copy of the training collection elsewhere excludes as much.
    copy = tmp_path / "copy"
    shutil.copytree(demo_dir, copy)
    metrics = evaluate_pipeline(
        spec, tmp_path / "out", data={"root": str(copy)}, num_workers=0, accelerator="cpu"
    )
    trained = trained_images(all_tasks_sweep, ("artefact", *FIELDS))  # the tasks of spec
    with (copy / "annotations.csv").open() as handle:
        labelled = {row["path"] for row in csv.DictReader(handle)}
    assert metrics["excluded_trained_on"] == len(labelled & trained) > 0
    assert metrics["images"] == len(labelled - trained)
    # What each model was scored on is written down, as evaluate.py data.root=... does.
    assert len(read_split(tmp_path / "out" / "artefact" / "split.csv")["test"]) == len(
        labelled - trained
    )
    assert (tmp_path / "out" / "coins-material" / "skipped.csv").is_file()


def test_predict_script_with_explanations(sweep_dir, demo_dir, tmp_path):
    images = demo_images(demo_dir)
    folder = tmp_path / "photos"
    folder.mkdir()
    for artwork_type in ("coins", "icons", "frescoes"):
        shutil.copy(images[artwork_type][0], folder)
    process = run_script(
        "predict.py",
        f"input={folder}",
        f"pipeline.from_sweep={sweep_dir}",
        "explain=true",
        "num_workers=0",
        f"hydra.run.dir={tmp_path / 'out'}",
    )
    assert_ok(process)
    assert "images/s" in process.stdout + process.stderr
    rows = list(csv.DictReader((tmp_path / "out" / "predictions.csv").open()))
    assert len(rows) == 3
    for index, row in enumerate(rows):
        maps = tmp_path / "out" / "explanations" / f"{index:06d}-{Path(row['path']).name}"
        expected = {"artefact.png"} | {
            f"{task.replace('/', '-')}.png"
            for task in TASK_IDS  # the sweep trained every field
            if task.startswith(row["artwork_type"] + "/")
        }
        assert {p.name for p in maps.iterdir()} == expected
