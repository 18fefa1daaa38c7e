"""`hydra/launcher=slurm` against a running one-node SLURM cluster (`scripts/local_slurm.py`).

Marked `slurm`: the default run leaves them out; `pytest -m slurm` starts one cluster for the
session (as root; it installs the packages where they are missing) and skips every test with
the script's one-line reason where it cannot run. Each job's requests are cut down to this
node (2 cores, no GPU: the launcher asks for GPUs only when `trainer.accelerator` is not cpu).
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import FAST, PROJECT_ROOT, Sweep, assert_ok, run_sweep

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(600)]

SCRIPT = PROJECT_ROOT / "scripts" / "local_slurm.py"
CANNOT_RUN = 77  # the script's exit code where this machine cannot run a cluster
# One core and 3 GB a task: a two-task DDP job takes the whole node, the next one queues.
ON_THIS_NODE = [
    "hydra/launcher=slurm",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=3",
    "hydra.launcher.timeout_min=15",
]


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A one-node cluster for the session; SLURM_CONF points this process and its children at it.

    The daemons' logs are kept in pytest's base temporary folder (`slurm-logs/`).
    """
    command = [sys.executable, str(SCRIPT)]
    # In a folder of its own under /tmp: munged's user cannot enter pytest's private one.
    started = subprocess.run([*command, "start"], capture_output=True, text=True)
    if started.returncode == CANNOT_RUN:
        pytest.skip(started.stderr.strip().splitlines()[-1])
    assert started.returncode == 0, started.stderr[-4000:]
    configuration = Path(started.stdout.strip().rpartition("SLURM_CONF=")[2])
    os.environ["SLURM_CONF"] = str(configuration)
    try:
        yield configuration.parent
    finally:
        subprocess.run([*command, "stop", str(configuration.parent)], timeout=180)
        logs = tmp_path_factory.getbasetemp() / "slurm-logs"
        shutil.copytree(configuration.parent / "log", logs, dirs_exist_ok=True)
        del os.environ["SLURM_CONF"]
        shutil.rmtree(configuration.parent, ignore_errors=True)


def start_sweep(sweep_dir: Path, demo_dir: Path, *overrides: str) -> subprocess.Popen:
    """`train.py -m` as `run_sweep` runs it (wandb offline), without waiting for it."""
    command = [
        sys.executable, "train.py", "-m", *[o for o in FAST if not o.startswith("logger=")],
        *overrides, f"data.demo_dir={demo_dir}", f"hydra.sweep.dir={sweep_dir}",
    ]  # fmt: skip
    environment = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    return subprocess.Popen(
        command, cwd=PROJECT_ROOT, env=environment, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip


def finish(process: subprocess.Popen, timeout: float = 400) -> str:
    """Wait for a sweep started by `start_sweep`; its output."""
    output, _ = process.communicate(timeout=timeout)
    return output


def summary(sweep_dir: Path) -> list[dict[str, str]]:
    with (sweep_dir / "summary.csv").open() as handle:
        return list(csv.DictReader(handle))


def slurm_job_ids(sweep_dir: Path) -> list[str]:
    """The SLURM jobs a sweep submitted: submitit keeps a folder per job id."""
    submitit = sweep_dir / ".submitit"
    if not submitit.is_dir():
        return []
    return sorted(p.name for p in submitit.iterdir() if p.name.isdigit())


def sacct(job_id: str) -> list[dict[str, str]]:
    """The accounting records of a job and its steps, requeued runs included."""
    fields = "JobID,State,NTasks,ExitCode"
    command = ["sacct", "--noheader", "--parsable2", "--duplicates", f"--format={fields}"]
    done = subprocess.run([*command, f"--jobs={job_id}"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rows = [line.split("|") for line in done.stdout.splitlines()]
    return [dict(zip(fields.split(","), row, strict=True)) for row in rows]


def job_state(job_id: str) -> str:
    """The job's state in accounting, as of its latest run."""
    return [r["State"] for r in sacct(job_id) if r["JobID"] == job_id][-1]


def scontrol_job(job_id: str) -> str:
    """`scontrol show job` while SLURM still remembers the job ('' once it does not)."""
    done = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True)
    return done.stdout


def wait_until(condition, what: str, timeout: float = 300) -> None:
    """Poll `condition()` every second until it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(1)


def job_id_of(job_dir: Path) -> str:
    """The SLURM job a sweep job runs in: Hydra's `hydra.job.id`, once the job has started."""
    hydra = job_dir / ".hydra" / "hydra.yaml"
    found = re.search(r"^    id: '?(\d+)'?$", hydra.read_text(), re.M) if hydra.exists() else None
    return found.group(1) if found else ""


def processes_of(job_id: str) -> list[int]:
    """The processes on this machine that belong to SLURM job `job_id`."""
    marker = f"SLURM_JOB_ID={job_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.fixture(scope="module")
def ddp_sweep(
    slurm_cluster: Path, tmp_path_factory: pytest.TempPathFactory, demo_dir: Path
) -> Sweep:
    """Two tasks, each a SLURM job of two srun tasks (DDP ranks), wandb offline."""
    sweep_dir = tmp_path_factory.mktemp("slurm_ddp") / "sweep"
    arguments = [*ON_THIS_NODE, "task=coins/period,icons/location", "trainer=ddp"]
    process = run_sweep(sweep_dir, demo_dir, *arguments, wandb=True)
    assert_ok(process)
    return Sweep(sweep_dir, process.stdout + process.stderr)


def test_a_ddp_sweep_runs_each_job_as_one_slurm_job_of_two_tasks(ddp_sweep: Sweep):
    assert [(row["task"], row["status"]) for row in ddp_sweep.rows()] == [
        ("coins/period", "ok"),
        ("icons/location", "ok"),
    ]
    assert (ddp_sweep.path / "results.md").is_file()
    job_ids = slurm_job_ids(ddp_sweep.path)
    assert len(job_ids) == 2
    for job_id in job_ids:
        wait_until(lambda j=job_id: job_state(j) != "RUNNING", "accounting to record the end", 60)
        records = {record["JobID"]: record for record in sacct(job_id)}
        assert records[job_id]["State"] == "COMPLETED"
        assert records[f"{job_id}.0"]["NTasks"] == "2"  # srun started both ranks
        logs = ddp_sweep.path / ".submitit" / job_id
        # Lightning joined the srun tasks as ranks 0 and 1 and started none itself.
        assert "GLOBAL_RANK: 1, MEMBER: 2/2" in (logs / f"{job_id}_1_log.err").read_text()
        assert (logs / f"{job_id}_0_log.err").read_text().count("Starting with 2 processes") == 1


def test_each_ddp_job_has_one_folder_one_log_per_rank_and_one_wandb_run(ddp_sweep: Sweep):
    job_dirs = sorted(p for p in ddp_sweep.path.iterdir() if p.is_dir() and p.name[0].isdigit())
    assert [p.name for p in job_dirs] == ["0_coins-period_seed0", "1_icons-location_seed0"]
    for job_dir in job_dirs:
        assert (job_dir / "train.log").is_file() and (job_dir / "train_ddp_process_1.log").is_file()
        (run,) = (job_dir / "wandb").glob("offline-run-*")  # rank 0's alone
        assert run.name.endswith((job_dir / "wandb_id.txt").read_text().strip())


def test_a_rerun_of_a_finished_slurm_sweep_submits_nothing(ddp_sweep: Sweep, demo_dir: Path):
    before = slurm_job_ids(ddp_sweep.path)
    arguments = [*ON_THIS_NODE, "task=coins/period,icons/location", "trainer=ddp"]
    rerun = run_sweep(ddp_sweep.path, demo_dir, *arguments, wandb=True)
    assert_ok(rerun)
    assert [row["status"] for row in summary(ddp_sweep.path)] == ["skipped", "skipped"]
    assert slurm_job_ids(ddp_sweep.path) == before


def test_a_job_at_its_time_limit_saves_is_requeued_and_resumes_to_the_end(
    slurm_cluster: Path, tmp_path: Path, demo_dir: Path
):
    """`--signal=USR2@15` on a 1-minute limit: SLURM checks time limits every 30 s and signals at
    the first check that finds the job within signal_delay_s + 30 s of its limit, i.e. 15 to 45 s
    into the job (never sooner: a signal before Python has set its handlers would kill it).
    Training lasts 45 s of training time, counted across the requeue (Lightning's max_time),
    however fast this machine is: the signal always comes during it."""
    sweep_dir = tmp_path / "sweep"
    process = start_sweep(
        sweep_dir, demo_dir, *ON_THIS_NODE, "task=icons/location", "trainer.max_epochs=100000",
        "+trainer.max_time=00:00:00:45", "hydra.launcher.timeout_min=1",
        "hydra.launcher.signal_delay_s=15",
    )  # fmt: skip
    job_dir = sweep_dir / "0_icons-location_seed0"
    wait_until(lambda: job_id_of(job_dir), "the job to start", timeout=120)
    job_id = job_id_of(job_dir)
    requeued = lambda: "Restarts=1" in scontrol_job(job_id)  # noqa: E731
    wait_until(lambda: requeued() or process.poll() is not None, "the requeue", timeout=150)
    assert requeued(), "the job ended before SLURM's signal"
    # One requeue is what this test checks: the requeued run gets the time it needs.
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "TimeLimit=15"], check=True)
    assert "TimeLimit=00:15:00" in scontrol_job(job_id), scontrol_job(job_id)
    output = finish(process)
    assert process.returncode == 0, output[-4000:]
    (row,) = summary(sweep_dir)
    assert row["status"] == "ok"
    wait_until(lambda: job_state(job_id) != "RUNNING", "accounting to record the end", 60)
    assert [r["State"] for r in sacct(job_id) if r["JobID"] == job_id] == ["REQUEUED", "COMPLETED"]
    log = (job_dir / "train.log").read_text()
    saved = re.search(r"Saved \S+last\.ckpt on SIGUSR2 \(epoch (\d+)\)", log)
    assert saved, log[-3000:]
    assert f"(saved in epoch {saved.group(1)})" in log  # resumed from that very checkpoint
    assert "Starting afresh" not in log  # the same split.csv
    # Trained on to the end, past the epoch it saved in; no epoch logged twice or redone. (Saved
    # on an epoch's last batch, Lightning resumes at the next epoch: that one has no val row.)
    epochs = json.loads((job_dir / "result.json").read_text())["epochs"]
    assert epochs > int(saved.group(1)) + 1
    with (job_dir / "logs" / "metrics.csv").open() as handle:
        logged = [int(float(r["epoch"])) for r in csv.DictReader(handle) if r.get("val/acc")]
    assert logged == sorted(set(logged)) and logged[0] == 0 and logged[-1] >= epochs - 1
    run_id = (job_dir / "wandb_id.txt").read_text().strip()
    runs = sorted((job_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(run.name.endswith(run_id) for run in runs)


def test_a_cancelled_job_fails_alone_and_leaves_nothing_running(
    slurm_cluster: Path, tmp_path: Path, demo_dir: Path
):
    sweep_dir = tmp_path / "sweep"
    process = start_sweep(
        sweep_dir, demo_dir, *ON_THIS_NODE, "task=icons/location", "trainer.max_epochs=2,300"
    )
    cancelled = sweep_dir / "1_icons-location_seed0"
    wait_until(lambda: (cancelled / "logs" / "metrics.csv").is_file(), "job 1 to train")
    job_id = job_id_of(cancelled)
    subprocess.run(["scancel", job_id], check=True)
    output = finish(process)
    assert process.returncode != 0
    rows = summary(sweep_dir)
    assert [row["status"] for row in rows] == ["ok", "failed"]
    assert "CANCELLED" in rows[1]["reason"], output[-3000:]
    assert next(r["State"] for r in sacct(job_id) if r["JobID"] == job_id).startswith("CANCELLED")
    wait_until(lambda: not processes_of(job_id), "the cancelled job's processes", timeout=30)


def test_a_job_asking_more_than_the_node_has_is_refused_and_fails(
    slurm_cluster: Path, tmp_path: Path, demo_dir: Path
):
    for request in ("hydra.launcher.cpus_per_task=64", "hydra.launcher.mem_gb=4096"):
        sweep_dir = tmp_path / request.rpartition(".")[2].replace("=", "-")
        refused = run_sweep(sweep_dir, demo_dir, *ON_THIS_NODE, "task=icons/location", request)
        assert refused.returncode != 0
        (row,) = summary(sweep_dir)
        assert row["status"] == "failed"
        assert row["reason"].startswith("sbatch: error: "), row["reason"]  # SLURM's own words
        assert "Batch job submission failed" in row["reason"]
