"""Compatibility: what release 0.1 wrote still evaluates, resumes and reports with today's code;
and a job's log carries no warning about settings of ours (deprecated, or Lightning's tips).

The release 0.1 files are in `fixtures/release_0_1/` (its README says how they were made).
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import FAST, assert_ok, run_script

from significance.checkpoint_evaluation import evaluate_checkpoint
from significance.models.module import ArtworkClassifier, load_classifier, read_checkpoint
from significance.run_files import LAST_CHECKPOINT, RESULT_FILE, SPLIT_FILE, SUMMARY_FILE

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "release_0_1"
# Every absolute path in the fixture starts with this; a test puts its own folders instead.
PLACEHOLDER = "<fixture>"
JOB = "0_icons-location_seed0"
# Settings of a job that keep a last checkpoint after every epoch (as the fixture's job did).
LAST_EVERY_EPOCH = [
    "callbacks.last_checkpoint.every_n_epochs=1",
    "callbacks.last_checkpoint.train_time_interval=null",
]


def replace_paths(value: Any, old: str, new: str) -> Any:
    """`value` (a checkpoint's contents, nested) with `old` replaced by `new` in every string."""
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, dict):
        return type(value)(
            (replace_paths(key, old, new), replace_paths(item, old, new))
            for key, item in value.items()
        )
    if isinstance(value, (list, tuple)):
        return type(value)(replace_paths(item, old, new) for item in value)
    return value


def rewrite_paths(folder: Path, old: str, new: str) -> None:
    """Replace `old` by `new` in every file under `folder`, checkpoints included."""
    for path in sorted(folder.rglob("*")):
        if path.suffix == ".ckpt":
            torch.save(replace_paths(torch.load(path, weights_only=True), old, new), path)
        elif path.is_file() and path.suffix in (".csv", ".json"):
            path.write_text(path.read_text().replace(old, new))


@pytest.fixture
def sweep_0_1(tmp_path: Path, demo_dir: Path) -> Path:
    """The release 0.1 sweep, copied into `tmp_path`, pointing there and at the demo collection."""
    sweep = tmp_path / "sweep"
    shutil.copytree(FIXTURE / "sweep", sweep)
    rewrite_paths(sweep, f"{PLACEHOLDER}/demo", str(demo_dir))
    rewrite_paths(sweep, PLACEHOLDER, str(tmp_path))
    return sweep


def test_a_release_0_1_checkpoint_evaluates_to_its_recorded_figures(
    sweep_0_1: Path, tmp_path: Path
):
    job = sweep_0_1 / JOB
    recorded = json.loads((job / RESULT_FILE).read_text())
    metrics = evaluate_checkpoint(
        job / "checkpoints" / "best.ckpt", tmp_path / "evaluation", accelerator="cpu", num_workers=0
    )
    assert metrics["split_file"] == str(job / SPLIT_FILE)
    for name in ("acc", "acc_macro", "f1_macro", "loss"):
        assert metrics[f"test/{name}"] == pytest.approx(recorded[f"test_{name}"], abs=1e-6)
    # Made before calibration: temperature 1, and the report says why.
    assert metrics["calibration"]["temperature"] == 1.0 and not metrics["calibration"]["fitted"]
    assert metrics["test/ece_calibrated"] == pytest.approx(metrics["test/ece"])
    # As it is in the repository, paths and all: the checkpoint alone rebuilds the model.
    model = load_classifier(FIXTURE / "sweep" / JOB / "checkpoints" / "best.ckpt")
    assert model.task.id == "icons/location" and list(model.task.classes) == ["cyprus", "other"]


def test_a_release_0_1_optimizer_is_adam_and_takes_its_saved_state():
    checkpoint = read_checkpoint(FIXTURE / "sweep" / JOB / LAST_CHECKPOINT)
    saved = checkpoint["hyper_parameters"]
    assert "_target_" not in saved["optimizer"] and "scheduler" not in saved
    optimizer = ArtworkClassifier(**saved).configure_optimizers()
    assert type(optimizer) is torch.optim.Adam
    assert optimizer.defaults["lr"] == 1e-5 and optimizer.defaults["amsgrad"]
    optimizer.load_state_dict(checkpoint["optimizer_states"][0])
    assert all("max_exp_avg_sq" in state for state in optimizer.state.values())


def test_a_release_0_1_job_resumes_with_todays_train_py(sweep_0_1: Path, demo_dir: Path):
    job = sweep_0_1 / JOB
    split = (job / SPLIT_FILE).read_text()
    process = run_script(
        "train.py",
        "task=icons/location",
        *FAST,  # trainer.max_epochs=2: one epoch more than the fixture's job trained
        *LAST_EVERY_EPOCH,
        f"data.demo_dir={demo_dir}",
        f"hydra.run.dir={job}",
    )
    assert_ok(process)
    output = process.stdout + process.stderr
    assert f"Resuming icons/location from {job / LAST_CHECKPOINT} (saved in epoch 0)" in output
    assert "exists and is not empty" not in output  # Lightning, of the folder being resumed
    result = json.loads((job / RESULT_FILE).read_text())
    assert result["status"] == "ok" and result["epochs"] == 2
    assert (job / SPLIT_FILE).read_text() == split  # resumed on its own split, not a new one
    with (job / "logs" / "metrics.csv").open() as handle:
        epochs = {row["epoch"] for row in csv.DictReader(handle) if row.get("train/loss")}
    assert epochs == {"0", "1"}  # release 0.1's epoch kept, today's added
    last = read_checkpoint(job / LAST_CHECKPOINT)
    assert last["epoch"] == 1 and last["hyper_parameters"]["optimizer"]["_target_"].endswith("Adam")


def test_a_release_0_1_sweep_reports_with_todays_report_py(sweep_0_1: Path):
    (sweep_0_1 / "results.md").unlink(missing_ok=True)
    assert_ok(run_script("report.py", f"sweep_dir={sweep_0_1}"))
    with (sweep_0_1 / SUMMARY_FILE).open() as handle:
        (row,) = csv.DictReader(handle)
    results = (sweep_0_1 / "results.md").read_text()
    overview = next(line for line in results.splitlines() if line.startswith("| `icons/location`"))
    assert f"{float(row['test_acc']):.3f} (1 seed)" in overview
    assert f"{float(row['test_f1_macro']):.3f} (1 seed)" in overview
    assert (sweep_0_1 / "results.csv").is_file()


def test_a_training_job_logs_no_deprecated_setting_nor_tip(tmp_path: Path, demo_dir: Path):
    run_dir = tmp_path / "run"
    process = run_script(
        "train.py",
        "task=icons/location",
        *[o for o in FAST if not o.startswith(("logger=", "trainer.max_epochs="))],
        "trainer.max_epochs=1",
        f"data.demo_dir={demo_dir}",
        f"hydra.run.dir={run_dir}",
        env={"WANDB_SILENT": "false"},  # wandb's own warnings shown, as a user sees them
    )
    assert_ok(process)
    log = process.stdout + process.stderr + (run_dir / "train.log").read_text()
    assert "wandb runs offline into" in log  # the wandb logger was on
    assert "anonymous" not in log  # wandb: "The anonymous setting has no effect ..."
    assert "Tip:" not in log  # Lightning: "💡 Tip: For seamless cloud logging ..."
    assert "logging interval" not in log  # Lightning: epochs shorter than log_every_n_steps
    assert "sizes do not match" not in log  # wandb: a panel of misclassified images
