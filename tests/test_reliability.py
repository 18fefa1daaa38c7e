"""Reliability and safety: resuming after SIGKILL, sweep reruns, unsafe checkpoints, bad configs."""

import csv
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import FAST, PROJECT_ROOT, assert_ok, run_script

from significance.errors import CheckpointError, CheckpointSaveError, ResumeError
from significance.models.module import ArtworkClassifier, load_classifier
from significance.tasks import Task
from significance.training.checkpoints import AtomicCheckpointIO, check_resumable
from significance.training.metrics_log import trim_metrics_log

# The last checkpoint after every epoch instead of every 10 minutes, so a short run has one.
EVERY_EPOCH = [
    "callbacks.last_checkpoint.train_time_interval=null",
    "callbacks.last_checkpoint.every_n_epochs=1",
]


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def wait_for(condition, timeout: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            pytest.fail(f"the process ended (exit {process.returncode}) before the condition")
        if time.time() > deadline:
            pytest.fail("timed out waiting")
        time.sleep(0.05)


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

    # Other settings into the same folder: no job resumed or skipped, each says what differs.
    other = run_script(*command, "optimizer.lr=0.5")
    assert other.returncode == 1
    refused = read_csv(sweep_dir / "summary.csv")
    assert [r["status"] for r in refused] == ["failed", "failed"]
    assert all("optimizer.lr: 1e-05 -> 0.5" in r["reason"] for r in refused), refused
    assert "resume=false" in refused[0]["reason"]
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


class WritesAFile:
    """A pickle payload: unpickling it creates a file (as any code could run)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def small_checkpoint(task_id: str = "icons/location", classes=("cyprus", "other")) -> dict:
    """A real checkpoint's contents: tiny model, plain hyperparameters."""
    model = ArtworkClassifier(
        task={"id": task_id, "stage": 2, "artwork_type": "x", "field": "y", "classes": classes},
        model={"name": "tiny_vgg", "pretrained": False},
        optimizer={"lr": 1e-3},
        preprocessing={"image_size": 32, "mean": [0.5] * 3, "std": [0.5] * 3},
    )
    return {
        "epoch": 3,
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "optimizer_states": [],
    }


def test_a_checkpoint_whose_payload_would_run_code_is_refused_and_never_runs(
    tmp_path: Path, demo_dir: Path
):
    marker = tmp_path / "payload-ran"
    checkpoint = small_checkpoint()
    checkpoint["hyper_parameters"]["seed"] = WritesAFile(marker)
    evil = tmp_path / "evil.ckpt"
    torch.save(checkpoint, evil)

    evaluated = run_script("evaluate.py", f"ckpt={evil}", f"hydra.run.dir={tmp_path / 'eval'}")
    assert evaluated.returncode == 1
    last_line = evaluated.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"error: refused to load {evil}")
    assert not marker.exists()

    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(evil.read_bytes())
    resumed = run_script("train.py", *FAST, f"data.demo_dir={demo_dir}", f"hydra.run.dir={run_dir}")
    assert resumed.returncode == 1 and "error: refused to load" in resumed.stderr
    assert not marker.exists()

    # The payload is live: an unsafe load would have run it.
    torch.load(evil, weights_only=False)
    assert marker.exists()


def test_a_truncated_checkpoint_gets_a_message_not_a_traceback(tmp_path: Path):
    whole = tmp_path / "whole.ckpt"
    torch.save(small_checkpoint(), whole)
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    process = run_script("evaluate.py", f"ckpt={cut}", f"hydra.run.dir={tmp_path / 'eval'}")
    assert process.returncode == 1
    assert "Traceback" not in process.stderr
    assert (
        process.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: cannot read checkpoint {cut}: truncated or not a checkpoint")
    )


def test_an_unknown_architecture_or_a_class_list_that_does_not_fit_is_named(tmp_path: Path):
    unknown = small_checkpoint()
    unknown["hyper_parameters"]["model"] = {"name": "no_such_net", "pretrained": False}
    torch.save(unknown, tmp_path / "unknown.ckpt")
    with pytest.raises(CheckpointError, match="architecture 'no_such_net'"):
        load_classifier(tmp_path / "unknown.ckpt")
    misfit = small_checkpoint()
    misfit["hyper_parameters"]["task"]["classes"] = ("a", "b", "c")
    torch.save(misfit, tmp_path / "misfit.ckpt")
    with pytest.raises(CheckpointError, match=r"3 classes \['a', 'b', 'c'\]"):
        load_classifier(tmp_path / "misfit.ckpt")


def test_resuming_from_a_checkpoint_of_another_task_class_list_or_model_is_refused(
    tmp_path: Path,
):
    path = tmp_path / "last.ckpt"
    torch.save(small_checkpoint(), path)
    task = Task.from_config(small_checkpoint()["hyper_parameters"]["task"])
    assert check_resumable(path, task, "tiny_vgg") == 3
    other_task = Task.from_config({**task.to_dict(), "id": "coins/period"})
    with pytest.raises(ResumeError, match="trained for task 'icons/location'"):
        check_resumable(path, other_task, "tiny_vgg")
    other_classes = Task.from_config({**task.to_dict(), "classes": ["cyprus", "greece"]})
    with pytest.raises(ResumeError, match="classes"):
        check_resumable(path, other_classes, "tiny_vgg")
    with pytest.raises(ResumeError, match="'tiny_vgg' model, this run builds 'vgg16'"):
        check_resumable(path, task, "vgg16")


def test_a_full_disk_while_saving_keeps_the_last_good_checkpoint(tmp_path: Path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"epoch": 1}, path)

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(CheckpointSaveError, match=r"the disk is full; the previous last\.ckpt"):
        io.save_checkpoint({"epoch": 2}, path)
    monkeypatch.undo()
    assert io.load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary left behind


def test_the_metrics_log_keeps_only_the_epochs_a_resumed_run_does_not_redo(tmp_path: Path):
    log = tmp_path / "metrics.csv"
    log.write_text("epoch,step,val/acc,test/acc\n0,3,0.5,\n1,7,0.6,\n2,11,0.7,\n,0,,0.9\n")
    trim_metrics_log(log, first_epoch=2)
    assert log.read_text().splitlines() == ["epoch,step,val/acc,test/acc", "0,3,0.5,", "1,7,0.6,"]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["task=no/such"], "Could not find 'task/no/such' (tasks: artefact, coins/material"),
        (["optimizer.lrr=1"], "Could not override 'optimizer.lrr': Key 'lrr' is not in struct"),
        (["optimizer.lr=0"], "optimizer.lr must be > 0, got 0"),
        (["data.batch_size=0"], "data.batch_size must be >= 1, got 0"),
        (["trainer.devices=4096"], "trainer.devices=4096"),
        (["model=vgg16", "model.image_size=16"], "model.image_size=16 is below the 32 px vgg16"),
        (["hydra.run.dir={file}/run"], "Not a directory: {file}/run"),
    ],
)
def test_a_bad_setting_stops_in_one_line_before_reading_data(
    tmp_path: Path, overrides: list[str], message: str
):
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    demo = tmp_path / "demo"  # generated on first use: must not be
    arguments = [o.format(file=a_file) for o in overrides]
    started = time.time()
    process = run_script(
        "train.py",
        *FAST,
        f"data.demo_dir={demo}",
        f"hydra.run.dir={tmp_path / 'run'}",
        *arguments,
        timeout=120,
    )
    assert process.returncode == 1
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1, process.stderr  # one line: not Hydra's, not a traceback
    assert lines[0].startswith("error: ") and message.format(file=a_file) in lines[0]
    assert not demo.exists() and not (tmp_path / "run" / "checkpoints").exists()
    assert time.time() - started < 60


def test_wandb_set_online_without_login_or_network_goes_offline(monkeypatch, caplog):
    from significance.training.tracking import online_or_offline

    monkeypatch.setenv("NETRC", "/nonexistent")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert online_or_offline("online") == "offline"
    assert "not logged in" in caplog.text and "wandb sync" in caplog.text
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    assert online_or_offline("online", timeout_s=2) == "offline"
    assert "127.0.0.1:9 cannot be reached" in caplog.text
    assert online_or_offline("disabled") == "disabled"


def processes_with(text: str) -> list[tuple[int, str]]:
    """(pid, command line) of the processes whose command line contains `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in line:
                found.append((int(entry.name), line))
    return found


def process_tree(pid: int) -> list[int]:
    """`pid` and every process descended from it."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            ppid = next(line for line in status.splitlines() if line.startswith("PPid:"))
            parents[int(entry.name)] = int(ppid.split()[1])
    tree = [pid]
    for member in tree:
        tree += [child for child, parent in parents.items() if parent == member]
    return tree


def start_long_and_short_job(
    sweep_dir: Path, demo_dir: Path, *overrides: str, epochs: str = "100000,1"
) -> subprocess.Popen:
    """A sweep of icons/location jobs, one per entry of `epochs`: 100000 runs until killed."""
    fast = [o for o in FAST if not o.startswith("trainer.max_epochs")]
    return subprocess.Popen(
        [
            sys.executable,
            "train.py",
            "-m",
            "task=icons/location",
            *fast,
            *overrides,
            f"trainer.max_epochs={epochs}",
            f"data.demo_dir={demo_dir}",
            f"hydra.sweep.dir={sweep_dir}",
        ],
        cwd=PROJECT_ROOT,
        env={**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_a_rank(sweep: subprocess.Popen, sweep_dir: Path, job: int, rank: int) -> Path:
    """SIGKILL one rank of DDP job `job` once it trains; its job is recorded within a minute."""
    job_dir = sweep_dir / f"{job}_icons-location_seed0"
    metrics = job_dir / "logs" / "metrics.csv"
    wait_for(lambda: metrics.is_file(), timeout=300, process=sweep)
    # The job's two ranks: its command line names the job's folder (quoted or not).
    ranks = {pid: line for pid, line in processes_with(str(job_dir)) if "train.py" in line}
    victim = [p for p, line in ranks.items() if ("train_ddp_process_1" in line) == (rank == 1)]
    assert len(ranks) == 2 and len(victim) == 1, ranks
    os.kill(victim[0], signal.SIGKILL)
    killed = time.time()
    summary = sweep_dir / "summary.csv"
    wait_for(lambda: summary.is_file() and len(read_csv(summary)) > job, 120, process=sweep)
    assert time.time() - killed < 60
    return job_dir


def test_a_ddp_job_whose_rank_dies_fails_within_a_minute_and_the_sweep_goes_on(
    tmp_path: Path, demo_dir: Path
):
    # Job 0 loses rank 0, job 1 loses rank 1, job 2 is short: one sweep for both ranks.
    sweep_dir = tmp_path / "sweep"
    sweep = start_long_and_short_job(sweep_dir, demo_dir, "trainer=ddp", epochs="100000,100000,1")
    try:
        job_dirs = [kill_a_rank(sweep, sweep_dir, job, rank=job) for job in (0, 1)]
        _, stderr = sweep.communicate(timeout=300)
    finally:
        sweep.kill()
    assert sweep.returncode == 1
    rows = read_csv(sweep_dir / "summary.csv")
    assert [r["status"] for r in rows] == ["failed", "failed", "ok"]
    assert all(row["exit_code"] not in ("", "0") for row in rows[:2])
    for job_dir in job_dirs:
        assert not [pid for pid, line in processes_with(str(job_dir)) if "train.py" in line]
    assert stderr.strip().splitlines()[-1].startswith("error: sweep job #0")


def test_resume_naming_a_run_folder_runs_there(compose_train):
    cfg = compose_train("resume=outputs/runs/coins-material/earlier")
    assert cfg.hydra.run.dir == "outputs/runs/coins-material/earlier"
    assert compose_train().hydra.run.dir.split("/")[-2] == "coins-material"  # auto: a new one


def test_out_of_gpu_memory_suggests_a_smaller_batch_or_bf16(capsys, monkeypatch):
    from significance.entry import run_entry_point

    monkeypatch.setenv("HYDRA_FULL_ERROR", "")  # restored afterwards: run_entry_point sets it

    def main() -> None:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with pytest.raises(SystemExit) as stopped:
        run_entry_point(main)
    assert stopped.value.code == 1
    line = capsys.readouterr().err.strip()
    assert line.startswith("error: out of GPU memory") and "data.batch_size" in line
    assert "bf16-mixed" in line


def test_a_slurm_sweep_job_killed_outright_fails_alone(tmp_path: Path, demo_dir: Path):
    """Through submitit (its local executor): a job SIGKILLed, as SLURM kills one out of memory."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep_dir = tmp_path / "sweep"
    sweep = start_long_and_short_job(sweep_dir, demo_dir, "hydra/launcher=slurm_local")
    try:
        job_dir = sweep_dir / "0_icons-location_seed0"
        wait_for(lambda: (job_dir / "logs" / "metrics.csv").is_file(), timeout=300, process=sweep)
        # submitit's folder of a local job is named by the id of the process that runs its
        # task in a child; its log names the job. SLURM kills a job whole: so does this test.
        logs = [
            log
            for log in (sweep_dir / ".submitit").glob("*/*_log.*")
            if job_dir.name in log.read_text(errors="replace")
        ]
        assert logs, list((sweep_dir / ".submitit").glob("*/*"))
        for pid in process_tree(int(logs[0].parent.name)):
            os.kill(pid, signal.SIGKILL)
        _, stderr = sweep.communicate(timeout=300)
    finally:
        sweep.kill()
    assert not processes_with(str(sweep_dir)), "a process of the sweep outlived it"
    assert sweep.returncode == 1
    rows = read_csv(sweep_dir / "summary.csv")
    assert [r["status"] for r in rows] == ["failed", "ok"]
    assert (sweep_dir / "results.md").is_file()
    assert "sweep job #0" in stderr


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
