"""Placing sweep jobs on devices, and the SLURM launcher's config composition."""

from pathlib import Path

import pytest
from conftest import FAST, assert_ok, run_script

from hydra_plugins.significance_launcher.subprocess_launcher import SubprocessLauncher, _Job


def _running_on(*slots: str) -> list[_Job]:
    return [_Job(i, [], Path("."), None, None, 0.0, cuda_devices=s) for i, s in enumerate(slots)]


def test_jobs_go_to_the_least_used_devices():
    separate = SubprocessLauncher(max_parallel=4, cuda_devices=[0, 1, 2, 3])
    assert separate._free_devices(_running_on("0", "1")) == "2"
    shared = SubprocessLauncher(max_parallel=4, cuda_devices=[0])
    assert shared._free_devices(_running_on("0", "0", "0")) == "0"
    pairs = SubprocessLauncher(max_parallel=2, cuda_devices=["0,1", "2,3"])
    assert pairs._free_devices(_running_on("0,1")) == "2,3"
    assert SubprocessLauncher()._free_devices([]) is None


def test_sweep_jobs_get_their_cuda_devices(tmp_path: Path, demo_dir: Path):
    process = run_script(
        "train.py",
        "-m",
        "task=coins/period,icons/location",
        *FAST,
        f"data.demo_dir={demo_dir}",
        f"data.cache_dir={tmp_path}/cache",
        f"hydra.sweep.dir={tmp_path}/sweep",
        "hydra.launcher.max_parallel=2",
        "hydra.launcher.cuda_devices=[0,1]",
    )
    assert_ok(process)
    output = process.stdout + process.stderr
    assert "#0 on CUDA_VISIBLE_DEVICES=0" in output and "#1 on CUDA_VISIBLE_DEVICES=1" in output
    assert (tmp_path / "sweep" / "summary.csv").read_text().count(",ok,") == 2


def test_slurm_launcher_takes_the_job_shape_from_the_trainer(compose_train):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    cfg = compose_train("hydra/launcher=slurm", "trainer=ddp", "trainer.num_nodes=3")
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (3, 2, 2)
    assert cfg.trainer.num_nodes == 3 and cfg.trainer.strategy == "ddp"
