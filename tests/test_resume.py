"""Resuming: a run killed mid-training, sweep reruns, the same draws after a resume."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from conftest import FAST, PROJECT_ROOT, assert_ok, read_csv, run_script, wait_for

from significance.training.metrics_log import trim_metrics_log

# The last checkpoint after every epoch instead of every 10 minutes, so a short run has one.
EVERY_EPOCH = [
    "callbacks.last_checkpoint.train_time_interval=null",
    "callbacks.last_checkpoint.every_n_epochs=1",
]


def test_a_run_killed_mid_training_resumes_with_the_same_split_epochs_and_wandb_run(
    tmp_path: Path, demo_dir: Path
):
    run_dir = tmp_path / "run"
    fast = [o for o in FAST if not o.startswith(("logger=", "trainer.max_epochs"))]
    command = [
        "train.py",
        "task=icons/location",
        *fast,  # wandb on, offline
        "trainer.max_epochs=12",
        *EVERY_EPOCH,
        f"data.demo_dir={demo_dir}",
        f"hydra.run.dir={run_dir}",
    ]
    environment = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    first = subprocess.Popen(
        [sys.executable, *command],
        cwd=PROJECT_ROOT,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    metrics = run_dir / "logs" / "metrics.csv"
    try:
        # Kill once the log shows epoch 2 is under way: mid-training, after a checkpoint.
        wait_for(
            lambda: (
                last.is_file()
                and metrics.is_file()
                and any(r["epoch"] == "1" for r in read_csv(metrics))
            ),
            timeout=300,
            process=first,
        )
        first.send_signal(signal.SIGKILL)
    finally:
        first.kill()
        first.wait()
    assert not (run_dir / "result.json").exists(), "the run ended before it was killed"
    killed_in_epoch = torch.load(last, weights_only=True, mmap=True)["epoch"]
    assert killed_in_epoch < 11
    split_before = (run_dir / "split.csv").read_bytes()
    run_id = (run_dir / "wandb_id.txt").read_text().strip()

    resumed = run_script(*command)  # the same command
    assert_ok(resumed)
    assert "Resuming icons/location" in resumed.stdout + resumed.stderr
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "ok" and result["epochs"] == 12
    assert (run_dir / "split.csv").read_bytes() == split_before
    assert (run_dir / "wandb_id.txt").read_text().strip() == run_id
    offline_runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 2 and {p.name.rsplit("-", 1)[1] for p in offline_runs} == {run_id}
    # The CSV log continues: every epoch's validation row exactly once, in order.
    validated = [int(r["epoch"]) for r in read_csv(metrics) if r.get("val/acc") and r["epoch"]]
    assert validated == list(range(12))


def test_resume_true_without_a_last_checkpoint_says_so(tmp_path: Path, demo_dir: Path):
    process = run_script(
        "train.py",
        *FAST,
        "resume=true",
        f"data.demo_dir={demo_dir}",
        f"hydra.run.dir={tmp_path / 'empty'}",
    )
    assert process.returncode == 1
    assert process.stderr.strip().splitlines()[-1].startswith("error: resume=True")
    assert "nothing to resume" in process.stderr


def test_a_sweep_rerun_skips_finished_jobs_resumes_interrupted_and_reruns_failed(
    tmp_path: Path, demo_dir: Path
):
    sweep_dir = tmp_path / "sweep"
    command = [
        "train.py",
        "-m",
        "task=icons/location,coins/period",
        *FAST,
        *EVERY_EPOCH,
        f"data.demo_dir={demo_dir}",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    assert_ok(run_script(*command))
    first = read_csv(sweep_dir / "summary.csv")
    assert [r["status"] for r in first] == ["ok", "ok"]
    finished_result = Path(first[0]["job_dir"]) / "result.json"
    finished_stamp = finished_result.stat().st_mtime_ns
    # Job 1 "was interrupted": its checkpoint is there, its result is not.
    (Path(first[1]["job_dir"]) / "result.json").unlink()

    rerun = run_script(*command)
    assert_ok(rerun)
    second = read_csv(sweep_dir / "summary.csv")
    assert [(r["task"], r["status"]) for r in second] == [
        ("icons/location", "skipped"),
        ("coins/period", "ok"),
    ]
    assert second[0]["test_acc"] == first[0]["test_acc"]  # the earlier run's figures
    assert finished_result.stat().st_mtime_ns == finished_stamp  # not run again
    assert "Resuming coins/period" in rerun.stdout + rerun.stderr
    # The skipped job's results still count: in the sweep's report and for a pipeline.
    assert "2 of 2 jobs finished and are included" in (sweep_dir / "results.md").read_text()

    # Other settings into the same folder: refused before any job runs, in one line that says
    # what differs; the sweep's records stay as they were.
    records = {name: (sweep_dir / name).read_bytes() for name in ("summary.csv", "results.md")}
    other = run_script(*command, "optimizer.lr=0.5")
    assert other.returncode == 1
    (line,) = other.stderr.strip().splitlines()
    assert line.startswith(f"error: {sweep_dir} holds an earlier run of this sweep"), line
    assert "#0 (optimizer.lr: 1e-05 -> 0.5)" in line and "resume=false" in line
    assert {name: (sweep_dir / name).read_bytes() for name in records} == records
    assert finished_result.stat().st_mtime_ns == finished_stamp

    # resume=false retrains every job, finished ones too, and draws each split anew.
    again = run_script(*command, "resume=false")
    assert_ok(again)
    third = read_csv(sweep_dir / "summary.csv")
    assert [r["status"] for r in third] == ["ok", "ok"]
    assert finished_result.stat().st_mtime_ns != finished_stamp


def test_a_failed_sweep_job_runs_again_on_rerun(tmp_path: Path, demo_dir: Path):
    sweep_dir = tmp_path / "sweep"
    command = [
        "train.py",
        "-m",
        "task=icons/location",
        "optimizer.lr=-1",
        *FAST,
        f"data.demo_dir={demo_dir}",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    for _ in range(2):
        process = run_script(*command)
        assert process.returncode == 1
        assert read_csv(sweep_dir / "summary.csv")[0]["status"] == "failed"
    # Both attempts ran and said why (each job appends to its train.log).
    job_log = next(sweep_dir.glob("0_*")) / "train.log"
    assert job_log.read_text().count("optimizer.lr must be > 0") == 2
    assert process.stderr.strip().splitlines()[-1].startswith("error: sweep job #0")


def test_the_metrics_log_keeps_only_the_epochs_a_resumed_run_does_not_redo(tmp_path: Path):
    log = tmp_path / "metrics.csv"
    log.write_text("epoch,step,val/acc,test/acc\n0,3,0.5,\n1,7,0.6,\n2,11,0.7,\n,0,,0.9\n")
    trim_metrics_log(log, first_epoch=2)
    assert log.read_text().splitlines() == ["epoch,step,val/acc,test/acc", "0,3,0.5,", "1,7,0.6,"]


def test_resume_naming_a_run_folder_runs_there(compose_train):
    cfg = compose_train("resume=outputs/runs/coins-material/earlier")
    assert cfg.hydra.run.dir == "outputs/runs/coins-material/earlier"
    assert compose_train().hydra.run.dir.split("/")[-2] == "coins-material"  # auto: a new one


def test_the_epochs_after_a_resume_draw_what_an_uninterrupted_run_draws(
    tmp_path: Path, demo_dir: Path
):
    # Shuffle, augmentation and dropout are seeded by seed and epoch: stopping after epoch 1
    # and resuming gives the weights of one run of 3 epochs, bit for bit.
    def run(folder: Path, epochs: int) -> subprocess.CompletedProcess:
        return run_script(
            "train.py",
            "task=icons/location",
            *FAST,
            *EVERY_EPOCH,
            f"trainer.max_epochs={epochs}",
            f"data.demo_dir={demo_dir}",
            f"hydra.run.dir={folder}",
        )

    assert_ok(run(tmp_path / "whole", 3))
    assert_ok(run(tmp_path / "parts", 1))
    resumed = run(tmp_path / "parts", 3)
    assert_ok(resumed)
    assert "Resuming icons/location" in resumed.stdout + resumed.stderr

    def weights(folder: Path) -> dict:
        return torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]

    whole, parts = weights(tmp_path / "whole"), weights(tmp_path / "parts")
    assert all(torch.equal(whole[key], parts[key]) for key in whole)
