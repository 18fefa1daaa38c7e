"""Placing sweep jobs on devices, and the SLURM launcher: its config and its sweep records."""

import csv
from pathlib import Path

import pytest
from conftest import FAST, TASK_IDS, Sweep, run_script

from hydra_plugins.significance_launcher.subprocess_launcher import SubprocessLauncher, _Job
from hydra_plugins.significance_launcher.sweep_record import SweepJob


def _running_on(*slots: str) -> list[_Job]:
    return [
        _Job(SweepJob(i, [], Path("."), None), None, 0.0, cuda_devices=s)
        for i, s in enumerate(slots)
    ]


def test_jobs_go_to_the_least_used_devices():
    separate = SubprocessLauncher(max_parallel=4, cuda_devices=[0, 1, 2, 3])
    assert separate._free_devices(_running_on("0", "1")) == "2"
    shared = SubprocessLauncher(max_parallel=4, cuda_devices=[0])
    assert shared._free_devices(_running_on("0", "0", "0")) == "0"
    pairs = SubprocessLauncher(max_parallel=2, cuda_devices=["0,1", "2,3"])
    assert pairs._free_devices(_running_on("0,1")) == "2,3"
    assert SubprocessLauncher()._free_devices([]) is None


def test_sweep_jobs_get_their_cuda_devices(all_tasks_sweep: Sweep):
    # The session's sweep runs two jobs at a time on hydra.launcher.cuda_devices=[0,1].
    output = all_tasks_sweep.output
    assert "#0 on CUDA_VISIBLE_DEVICES=0" in output and "#1 on CUDA_VISIBLE_DEVICES=1" in output
    summary = (all_tasks_sweep.path / "summary.csv").read_text()
    assert summary.count(",ok,") == len(TASK_IDS)


def test_slurm_launcher_takes_the_job_shape_from_the_trainer(compose_train):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    # Multi-node jobs cannot run on one machine: their shape is checked here, as composed.
    shape = ("hydra/launcher=slurm", "trainer=ddp", "trainer.num_nodes=3")
    cfg = compose_train(*shape, "trainer.accelerator=gpu")
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("significance_launcher.submitit_launchers.SlurmLauncher")
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (3, 2, 2)
    assert cfg.trainer.num_nodes == 3 and cfg.trainer.strategy == "ddp"
    on_cpus = compose_train(*shape, "trainer.accelerator=cpu").hydra.launcher
    assert (on_cpus.nodes, on_cpus.tasks_per_node, on_cpus.gpus_per_node) == (3, 2, None)


def test_a_submitit_sweep_records_skips_and_groups_as_the_default_launcher(
    tmp_path: Path, demo_dir: Path
):
    """The SLURM launcher's own code, run by submitit's local executor instead of SLURM."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep = tmp_path / "sweep"
    arguments = [
        "train.py",
        "-m",
        "hydra/launcher=slurm_local",
        "task=icons/location",
        "optimizer.lr=0.001,-1",  # job 1 fails
        *FAST,
        f"data.demo_dir={demo_dir}",
        f"data.cache_dir={tmp_path}/cache",
        f"hydra.sweep.dir={sweep}",
    ]
    first = run_script(*arguments)
    assert first.returncode != 0, first.stdout[-2000:] + first.stderr[-2000:]
    rows = _summary(sweep)
    assert [row["status"] for row in rows] == ["ok", "failed"]
    assert rows[0]["task"] == "icons/location" and float(rows[0]["test_acc"]) >= 0
    assert (sweep / "results.md").is_file()
    done = Path(rows[0]["job_dir"])
    assert done.name == "0_icons-location_seed0"
    assert f"group='{sweep.name}'" in (done / ".hydra" / "overrides.yaml").read_text()
    result = (done / "result.json").read_text()
    # The rerun submits job 1 alone; it must still run as job 1, in job 1's folder.
    second = run_script(*arguments)
    assert second.returncode != 0
    assert [row["status"] for row in _summary(sweep)] == ["skipped", "failed"]
    assert "#0 finished in an earlier run of this sweep: skipped" in second.stdout + second.stderr
    assert (done / "result.json").read_text() == result
    assert "optimizer.lr=0.001" in (done / ".hydra" / "overrides.yaml").read_text()
    failed = sweep / "1_icons-location_seed0" / ".hydra" / "overrides.yaml"
    assert "optimizer.lr=-1" in failed.read_text()


def _summary(sweep: Path) -> list[dict[str, str]]:
    with (sweep / "summary.csv").open() as handle:
        return list(csv.DictReader(handle))
