"""Failures: one-line errors for bad settings, wandb offline, GPU memory; dying ranks and jobs."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import FAST, PROJECT_ROOT, read_csv, run_script, wait_for


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
