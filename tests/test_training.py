"""Training, checkpoints and evaluation, in-process and through the real entry scripts."""

import csv
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from conftest import CONF_DIR, FAST, TASK_IDS, assert_ok, compose_config, moved_run, run_script
from crafted_images import CRAFTED, make_crafted
from hydra.core.global_hydra import GlobalHydra
from PIL import Image

from significance.checkpoint_evaluation import evaluate_checkpoint
from significance.data import scan
from significance.data.collection import Sample, read_labels
from significance.data.datamodule import ArtworkDataModule
from significance.data.run_split import CollectionSettings, SplitSettings, draw_split
from significance.data.split import read_split
from significance.errors import CheckpointError
from significance.models.module import load_classifier
from significance.tasks import Task, discover_tasks
from significance.training.train import train

TASKS = list(discover_tasks(CONF_DIR).values())


@pytest.fixture(scope="module")
def three_epochs(tmp_path_factory: pytest.TempPathFactory, demo_dir: Path) -> tuple[dict, Path]:
    """icons/location trained in-process for 3 epochs, the test split scored after each."""
    run_dir = tmp_path_factory.mktemp("three_epochs") / "run"
    overrides = ["task=icons/location", "trainer.max_epochs=3", "report_test_selected=true"]
    result = train(compose_config(run_dir, demo_dir, *overrides))
    GlobalHydra.instance().clear()
    return result, run_dir


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_every_task_trains_checkpoints_and_evaluates(task_id: str, all_tasks_sweep):
    run_dir = all_tasks_sweep.job_dir(task_id)
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "ok" and result["task"] == task_id
    checkpoint = Path(result["checkpoint"])
    assert checkpoint.name == "best.ckpt"
    metrics = json.loads((run_dir / "test" / "metrics.json").read_text())
    assert 0.0 <= metrics["test/acc"] <= 1.0
    test_split = read_split(run_dir / "split.csv")["test"]
    classes = next(task.classes for task in TASKS if task.id == task_id)
    assert sum(metrics[f"test/support/{name}"] for name in classes) == len(test_split)


def test_checkpoint_is_self_describing_and_loads_with_weights_only(all_tasks_sweep):
    result = json.loads((all_tasks_sweep.job_dir("frescoes/location") / "result.json").read_text())
    checkpoint = torch.load(result["checkpoint"], map_location="cpu", weights_only=True)
    hyper = checkpoint["hyper_parameters"]
    assert hyper["task"]["classes"] == ["cyprus", "italy", "other"]
    assert hyper["preprocessing"]["image_size"] == 32
    assert hyper["model"]["name"] == "tiny_vgg" and hyper["model"]["head"] == "pretrained"
    assert hyper["seed"] == 0 and Path(hyper["split_file"]).name == "split.csv"
    model = load_classifier(result["checkpoint"])
    assert model.task.id == "frescoes/location"


def test_the_papers_recipe_is_the_studys_vgg16_with_a_new_head(compose_train):
    cfg = compose_train("experiment=paper", fast=False)
    assert cfg.model.name == "vgg16" and cfg.model.head == "new" and cfg.model.pretrained
    assert cfg.trainer.max_epochs == 50 and cfg.optimizer.lr == 1e-5 and cfg.optimizer.amsgrad
    assert cfg.data.batch_size == 32 and cfg.trainer.precision == "32-true"


def test_best_checkpoint_is_chosen_on_validation_not_test(three_epochs):
    result, run_dir = three_epochs
    history = (run_dir / "logs" / "metrics.csv").read_text()
    assert "val/acc" in history
    best_val = max(float(v) for v in _column(run_dir / "logs" / "metrics.csv", "val/acc"))
    assert result["best_val_acc"] == pytest.approx(best_val)
    chosen = torch.load(result["checkpoint"], map_location="cpu", weights_only=True)["epoch"]
    assert result["best_epoch"] == chosen and 0 <= chosen < 3


def _column(path: Path, name: str) -> list[str]:
    with path.open() as handle:
        return [row[name] for row in csv.DictReader(handle) if row.get(name)]


def test_evaluate_on_a_collection_leaves_out_what_the_model_saw_by_content(
    all_tasks_sweep, tmp_path, demo_dir, monkeypatch
):
    run_dir = all_tasks_sweep.job_dir("coins/material")
    result = json.loads((run_dir / "result.json").read_text())
    split = read_split(run_dir / "split.csv")
    # A copy of the training collection elsewhere: its paths match nothing, its contents do.
    copy = tmp_path / "copy"
    shutil.copytree(demo_dir, copy)
    facts = tmp_path / "facts.sqlite"
    metrics = evaluate_checkpoint(
        result["checkpoint"], tmp_path / "other", data={"root": str(copy)}, facts_file=facts
    )
    assert metrics["excluded_seen"] == len(split["train"]) + len(split["val"])
    supports = [metrics[f"test/support/{c}"] for c in ("gold", "silver", "other")]
    assert sum(supports) == len(split["test"])
    everything = evaluate_checkpoint(
        result["checkpoint"],
        tmp_path / "all",
        data={"root": str(copy)},
        facts_file=facts,
        exclude_seen=False,
    )
    coins_with_material = 150
    assert everything["excluded_seen"] == 0
    assert sum(everything[f"test/support/{c}"] for c in ("gold", "silver", "other")) == (
        coins_with_material
    )
    # A second evaluation of the collection reads the facts of its files, scanning none.
    monkeypatch.setattr(scan, "scan_file", lambda path: pytest.fail(f"scanned {path}"))
    again = evaluate_checkpoint(
        result["checkpoint"], tmp_path / "again", data={"root": str(copy)}, facts_file=facts
    )
    assert again["test/acc"] == metrics["test/acc"]


def test_evaluate_without_the_recorded_split_refuses_unless_told(all_tasks_sweep, tmp_path):
    result = moved_run(all_tasks_sweep.job_dir("icons/location"), tmp_path / "run")
    (tmp_path / "run" / "split.csv").unlink()
    root = load_classifier(result["checkpoint"]).hparams["data"]["root"]
    with pytest.raises(CheckpointError, match="exclude_seen=false"):
        evaluate_checkpoint(result["checkpoint"], tmp_path / "e", data={"root": root})
    metrics = evaluate_checkpoint(
        result["checkpoint"], tmp_path / "e", data={"root": root}, exclude_seen=False
    )
    assert metrics["excluded_seen"] == 0


def test_a_split_file_without_hashes_still_reads_and_excludes(all_tasks_sweep, tmp_path):
    # Format 1 (before the SHA-256 column): the training collection's files are hashed.
    result = moved_run(all_tasks_sweep.job_dir("icons/location"), tmp_path / "run")
    split_file = tmp_path / "run" / "split.csv"
    parts = read_split(split_file)
    lines = split_file.read_text().splitlines()
    assert lines[0].startswith("# significance split format")
    old = ["path,label,group,split"] + [",".join(line.split(",")[:4]) for line in lines[2:]]
    split_file.write_text("\n".join(old) + "\n")
    assert all(not s.sha256 for part in read_split(split_file).values() for s in part)
    root = load_classifier(result["checkpoint"]).hparams["data"]["root"]
    metrics = evaluate_checkpoint(result["checkpoint"], tmp_path / "e", data={"root": root})
    assert metrics["excluded_seen"] == len(parts["train"]) + len(parts["val"])


def test_a_truncated_or_foreign_checkpoint_gets_a_message(tmp_path: Path):
    (tmp_path / "cut.ckpt").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(CheckpointError, match="truncated or not a checkpoint"):
        load_classifier(tmp_path / "cut.ckpt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.ckpt")
    with pytest.raises(CheckpointError, match="not a significance checkpoint"):
        load_classifier(tmp_path / "foreign.ckpt")


def test_train_then_evaluate_through_the_entry_scripts_gives_equal_metrics(
    all_tasks_sweep, tmp_path
):
    # train.py's run: the session sweep's job, trained by the entry script.
    run_dir = all_tasks_sweep.job_dir("manuscripts/description")
    result = json.loads((run_dir / "result.json").read_text())
    evaluation_dir = tmp_path / "evaluation"
    evaluated = run_script(
        "evaluate.py",
        f"ckpt={result['checkpoint']}",
        f"hydra.run.dir={evaluation_dir}",
        "num_workers=0",
    )
    assert_ok(evaluated)
    metrics = json.loads((evaluation_dir / "metrics.json").read_text())
    for key in ("test/acc", "test/acc_macro", "test/f1_macro", "test/loss", "test/ece"):
        assert metrics[key] == pytest.approx(result[key.replace("/", "_")], abs=1e-6)
    # The temperature fitted when training ended is the one evaluate.py applies.
    assert metrics["test/ece_calibrated"] == pytest.approx(result["test_ece_calibrated"], abs=1e-6)
    assert metrics["calibration"]["temperature"] == result["temperature"]
    assert (evaluation_dir / "reliability.png").is_file()
    assert "precision" in evaluated.stdout and "text&figure" in evaluated.stdout
    for name in ("figure", "text", "text&figure"):
        assert {f"test/{m}/{name}" for m in ("precision", "recall", "f1", "support")} <= set(
            metrics
        )


def test_a_run_logging_to_csv_needs_no_wandb_installed(tmp_path, demo_dir):
    fake = tmp_path / "site" / "wandb"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('wandb is not installed here')\n")
    inherited = os.environ.get("PYTHONPATH")
    process = run_script(
        "train.py",
        "task=icons/location",
        *FAST,
        f"data.demo_dir={demo_dir}",
        f"hydra.run.dir={tmp_path / 'run'}",
        # Before the inherited path, which may name this checkout's sources.
        env={"PYTHONPATH": os.pathsep.join(filter(None, [str(fake.parent), inherited]))},
    )
    assert_ok(process)
    assert (tmp_path / "run" / "result.json").is_file()


@pytest.mark.parametrize(
    "override, message",
    [
        ("optimizer.lr=-1", "optimizer.lr must be > 0"),
        ("data.batch_size=0", "batch_size"),
        ("trainer.num_nodes=3", "must divide evenly over trainer.devices x num_nodes = 3"),
    ],
)
def test_bad_settings_fail_before_training(compose_train, override: str, message: str, monkeypatch):
    # Before the collection is even read.
    monkeypatch.setattr(ArtworkDataModule, "prepare_data", lambda self: pytest.fail("read"))
    with pytest.raises(ValueError, match=message):
        train(compose_train(override))


def test_a_collection_with_bad_files_trains_to_the_end(compose_train, tmp_path, demo_dir):
    root = tmp_path / "messy"
    shutil.copytree(demo_dir, root)
    bad = {name: CRAFTED[name] for name in ("truncated.jpg", "zero.jpg", "text.jpg", "phone.jpg")}
    make_crafted(root / "bad")
    with (root / "annotations.csv").open("a", newline="") as handle:
        csv.writer(handle).writerows([f"bad/{name}", "coins", "gold", *[""] * 5] for name in bad)
    # The split the same table gets were the bad files readable (no decode: labels only).
    task = Task("coins/material", 2, "coins", "material", ("gold", "silver", "other"))
    readable_all, _ = draw_split(
        CollectionSettings(root),
        task,
        read_labels(root, "annotations", task, "annotations.csv"),
        SplitSettings(tasks=tuple(TASKS)),
    )
    result = train(
        compose_train("task=coins/material", f"data.root={root}", "trainer.max_epochs=1")
    )
    assert result["status"] == "ok"
    with (tmp_path / "run" / "skipped.csv").open() as handle:
        skipped = {row["path"]: row["reason"] for row in csv.DictReader(handle)}
    assert {path: reason.split(":")[0] for path, reason in skipped.items()} == {
        f"bad/{name}": problem for name, problem in bad.items()
    }
    # The bad files are left out and every other image keeps the split it would have if they
    # could be read.
    messy = {
        s.path: name
        for name, part in read_split(tmp_path / "run" / "split.csv").items()
        for s in part
    }
    assert messy == {path: part for path, part in readable_all.items() if path in messy}
    assert len(messy) == len(readable_all) - len(bad)


def test_an_image_that_breaks_during_the_run_is_replaced_not_fatal(tmp_path: Path):
    from significance.data.datamodule import ArtworkImages
    from significance.errors import UnreadableImageError

    for name in ("a.png", "b.png"):
        Image.new("RGB", (8, 8), (0, 200, 0) if name == "b.png" else (200, 0, 0)).save(
            tmp_path / name
        )
    samples = [Sample("a.png", "gold", "a.png"), Sample("b.png", "silver", "b.png")]
    training = ArtworkImages(tmp_path, samples, ("gold", "silver"), 4, replace_unreadable=True)
    (tmp_path / "a.png").write_bytes(b"broken after indexing")
    pixels, target, _aspect = training[0]
    assert target == 1 and pixels.shape == (3, 4, 4) and pixels[1].min() == 200
    # A test (or validation) image is never replaced: that would count another one twice.
    test = ArtworkImages(tmp_path, samples, ("gold", "silver"), 4)
    with pytest.raises(UnreadableImageError, match="became unreadable after the split"):
        test[0]


def test_a_fresh_start_in_a_used_folder_draws_its_own_split(compose_train, tmp_path: Path):
    train(compose_train("task=icons/location", "trainer.max_epochs=1", "seed=0"))
    first = (tmp_path / "run" / "split.csv").read_text()
    # A fresh start that fails leaves no result of the run before it.
    with pytest.raises(ValueError):
        train(compose_train("task=icons/location", "seed=1", "resume=false", "model.name=nonesuch"))
    assert not (tmp_path / "run" / "result.json").exists()
    train(compose_train("task=icons/location", "trainer.max_epochs=1", "seed=1", "resume=false"))
    assert (tmp_path / "run" / "split.csv").read_text() != first
    hyper = torch.load(tmp_path / "run" / "checkpoints" / "best.ckpt", weights_only=True)
    assert hyper["hyper_parameters"]["seed"] == 1


def test_the_studys_test_selected_figure_is_reported_beside_ours(three_epochs):
    result, run_dir = three_epochs
    by_epoch = {
        int(row["epoch"]): float(row["test_each_epoch/acc"])
        for row in csv.DictReader((run_dir / "logs" / "metrics.csv").open())
        if row.get("test_each_epoch/acc")
    }
    assert sorted(by_epoch) == [0, 1, 2]
    assert result["test_selected_acc"] == pytest.approx(max(by_epoch.values()))
    assert by_epoch[result["test_selected_epoch"]] == result["test_selected_acc"]
    # Never used to choose: ours is still the validation-chosen epoch, scored as at that epoch.
    assert result["test_acc"] == pytest.approx(by_epoch[result["best_epoch"]])
    best_val = max(float(v) for v in _column(run_dir / "logs" / "metrics.csv", "val/acc"))
    assert result["best_val_acc"] == pytest.approx(best_val)
