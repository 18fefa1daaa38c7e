"""Sweeps as a user runs them: `train.py -m ...` in a subprocess, DDP jobs included."""

import csv
import json
from pathlib import Path

import pytest
from conftest import CONF_DIR, TASK_IDS, Sweep, run_sweep, sweep_once
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from significance.checkpoint_evaluation import evaluate_checkpoint
from significance.data.collection import index_collection
from significance.data.run_split import CollectionSettings, SplitSettings, draw_split
from significance.data.split import read_split, write_split
from significance.tasks import discover_tasks

# coins/period gets an odd number of validation images from this fraction of the demo.
VAL_FRACTION = 0.12


def read_summary(sweep_dir: Path) -> list[dict]:
    with (sweep_dir / "summary.csv").open() as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def ddp_sweep(tmp_path_factory: pytest.TempPathFactory, demo_dir: Path) -> Sweep:
    """Two tasks, each a job on two DDP processes, wandb offline."""
    return sweep_once(
        tmp_path_factory,
        "ddp",
        demo_dir,
        "task=coins/period,icons/location",
        "trainer=ddp",
        f"data.val_fraction={VAL_FRACTION}",
        wandb=True,
    )


def test_a_ddp_sweep_records_each_jobs_figures_and_checkpoint(ddp_sweep: Sweep):
    rows = ddp_sweep.rows()
    assert [(r["task"], r["seed"], r["status"]) for r in rows] == [
        ("coins/period", "0", "ok"),
        ("icons/location", "0", "ok"),
    ]
    for row in rows:
        assert row["test_acc"] and row["test_f1_macro"] and row["best_val_acc"]
        assert float(row["wall_time_s"]) > 0
        assert Path(row["checkpoint"]).is_file()


def test_both_ranks_of_a_ddp_job_run_in_its_folder(ddp_sweep: Sweep):
    job_dirs = sorted(p for p in ddp_sweep.path.iterdir() if p.is_dir())
    assert [p.name for p in job_dirs] == ["0_coins-period_seed0", "1_icons-location_seed0"]
    for job_dir in job_dirs:
        assert (job_dir / "train_ddp_process_1.log").is_file()  # rank 1 ran in this job's folder
    assert "MEMBER: 2/2" in ddp_sweep.output


def test_each_ddp_job_logs_one_wandb_run_of_its_own(ddp_sweep: Sweep):
    run_ids = set()
    for row in ddp_sweep.rows():
        offline_runs = list((Path(row["job_dir"]) / "wandb").glob("offline-run-*"))
        assert len(offline_runs) == 1
        run_ids.add(offline_runs[0].name.rsplit("-", 1)[1])
    assert len(run_ids) == 2


def test_every_rank_read_the_split_any_process_computes(ddp_sweep: Sweep, demo_dir: Path):
    # The split every rank read is the one any process computes for this collection, task, seed.
    tasks = discover_tasks(CONF_DIR)
    task = tasks["icons/location"]
    samples, _ = index_collection(demo_dir, "annotations", task)
    draw = SplitSettings(val_fraction=VAL_FRACTION, tasks=tuple(tasks.values()))
    expected, _ = draw_split(CollectionSettings(demo_dir), task, samples, draw)
    recorded = read_split(ddp_sweep.job_dir("icons/location") / "split.csv")
    assert {s.path: name for name, part in recorded.items() for s in part} == expected


def test_validation_on_two_ranks_counts_every_image_once(ddp_sweep: Sweep, tmp_path: Path):
    # An odd number of validation images: a padding sampler would score one of them twice.
    run_dir = ddp_sweep.job_dir("coins/period")
    val = read_split(run_dir / "split.csv")["val"]
    assert len(val) % 2 == 1, len(val)
    best_epoch = str(json.loads((run_dir / "result.json").read_text())["best_epoch"])
    with (run_dir / "logs" / "metrics.csv").open() as handle:
        rows = csv.DictReader(handle)
        logged = [row for row in rows if row.get("val/acc") and row["epoch"] == best_epoch][-1]
    # The same weights on one device, the validation images as its test set.
    alone = tmp_path / "val_split.csv"
    write_split(alone, val, dict.fromkeys((s.path for s in val), "test"))
    metrics = evaluate_checkpoint(
        run_dir / "checkpoints" / "best.ckpt", tmp_path / "alone", split_file=alone, num_workers=0
    )
    assert float(logged["val/acc"]) == pytest.approx(metrics["test/acc"], abs=1e-6)
    assert float(logged["val/loss"]) == pytest.approx(metrics["test/loss"], rel=1e-5)


def test_a_failing_job_is_recorded_and_the_sweep_exits_nonzero(tmp_path: Path, demo_dir: Path):
    sweep_dir = tmp_path / "sweep"
    process = run_sweep(sweep_dir, demo_dir, "task=icons/location", "optimizer.lr=-1,0.001")
    assert process.returncode != 0
    rows = read_summary(sweep_dir)
    assert [r["status"] for r in rows] == ["failed", "ok"]
    assert rows[0]["exit_code"] == "1" and rows[1]["test_acc"]
    assert rows[1]["best_epoch"] in ("0", "1")  # the epoch of best.ckpt, of FAST's two
    assert "optimizer.lr must be > 0" in process.stderr


def test_all_tasks_experiment_sweeps_every_task_file(compose_train):
    cfg = compose_train("experiment=all_tasks")
    HydraConfig.instance().set_config(cfg)
    tasks = OmegaConf.select(cfg, "hydra.sweeper.params.task")
    assert tasks.split(",") == TASK_IDS


def test_the_all_tasks_sweep_runs_every_task(all_tasks_sweep: Sweep):
    # The sweeper resolves ${all_tasks:} before any job runs, when no HydraConfig is set yet.
    rows = all_tasks_sweep.rows()
    assert [row["task"] for row in rows] == TASK_IDS
    assert {row["status"] for row in rows} == {"ok"}


def test_paper_experiment_is_the_study_recipe(compose_train):
    cfg = compose_train("experiment=paper", fast=False)
    assert cfg.model.name == "vgg16" and cfg.model.pretrained and cfg.model.image_size == 224
    assert cfg.trainer.devices == 2 and cfg.trainer.strategy == "ddp"
    assert cfg.data.batch_size == 32 and cfg.optimizer.lr == 1e-5 and cfg.optimizer.amsgrad
    assert cfg.trainer.max_epochs == 50
    assert len(cfg.hydra.sweeper.params.task.split(",")) == 8
