"""Shared fixtures: the real configs composed and shrunk, a demo collection, script runners.

What takes a training run is trained once per session (`all_tasks_sweep`) and read by many
small tests; a test trains on its own only when training is what it checks.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# Under pytest-xdist each worker, and each process its tests start, gets its share of the cores
# before torch starts its threads: two workers at a thread per core each ran a step 6x slower.
if _workers := int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0")):
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // _workers)))

import torch  # after OMP_NUM_THREADS is set
from filelock import FileLock
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from significance.config import register_resolvers
from significance.data.demo import ensure_demo_collection
from significance.tasks import discover_tasks

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = PROJECT_ROOT / "conf"
TASK_IDS = list(discover_tasks(CONF_DIR))

# Settings that make a training run take seconds on a CPU: tiny model, no wandb, 2 epochs.
FAST = [
    "model=tiny_vgg",
    "logger=csv",
    "trainer.max_epochs=2",
    "trainer.accelerator=cpu",
    "data.num_workers=0",
    "+trainer.enable_model_summary=false",
]

# Each pytest-xdist worker may run a sweep of two training processes at once.
MEMORY_PER_WORKER = 6 * 2**30

register_resolvers()


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: one worker per usable core, as many as the memory holds; none for `-m slurm`."""
    from significance.hardware import usable_cores

    marks = config.option.markexpr
    if "slurm" in marks and "not slurm" not in marks:
        return 0  # one process, one cluster: its jobs share the node's cores anyway
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return max(1, min(usable_cores(), memory // MEMORY_PER_WORKER))


def made_once(
    tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], None]
) -> Path:
    """A folder that `make` fills once per test run, shared by every pytest-xdist worker.

    The workers take turns under a file lock (xdist's own recipe for session fixtures); when
    `make` fails, the next worker that needs the folder tries again and fails the same way.
    """
    if "PYTEST_XDIST_WORKER" not in os.environ:
        folder = tmp_path_factory.mktemp(name)
        make(folder)
        return folder
    shared = tmp_path_factory.getbasetemp().parent  # the run's folder above the workers'
    folder, made = shared / name, shared / f"{name}.made"
    with FileLock(shared / f"{name}.lock"):
        if not made.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            make(folder)
            made.touch()
    return folder


@pytest.fixture(scope="session", autouse=True)
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Collections and caches of the tests, and of the scripts they run, in a temporary folder."""
    path = tmp_path_factory.mktemp("data")
    before = os.environ.get("SIGNIFICANCE_DATA_DIR")
    os.environ["SIGNIFICANCE_DATA_DIR"] = str(path)
    yield path
    if before is None:
        del os.environ["SIGNIFICANCE_DATA_DIR"]
    else:
        os.environ["SIGNIFICANCE_DATA_DIR"] = before


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded demo collection, generated once per test run."""
    folder = made_once(
        tmp_path_factory, "collections", lambda f: ensure_demo_collection(f / "demo")
    )
    return folder / "demo"


def compose_config(
    output_dir: Path, demo_dir: Path, *overrides: str, fast: bool = True
) -> DictConfig:
    """Compose `conf/train.yaml` as `train.py` would, with its output in `output_dir`."""
    GlobalHydra.instance().clear()
    cache = f"data.facts_file={demo_dir.parent / 'image_facts.sqlite'}"
    shrink = [*FAST, f"data.demo_dir={demo_dir}", cache] if fast else []
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[*shrink, *overrides], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    return cfg


@pytest.fixture
def compose_train(tmp_path: Path, demo_dir: Path) -> Iterator:
    """Compose `conf/train.yaml` as `train.py` would, with its output in `tmp_path / "run"`."""

    def _compose(*overrides: str, fast: bool = True) -> DictConfig:
        return compose_config(tmp_path / "run", demo_dir, *overrides, fast=fast)

    yield _compose
    GlobalHydra.instance().clear()


def run_script(
    *arguments: str,
    cwd: Path = PROJECT_ROOT,
    timeout: float = 600,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run one of the entry scripts as a user would, in a fresh Python process."""
    environment = {
        **os.environ,
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, *arguments],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_sweep(
    sweep_dir: Path, demo_dir: Path, *overrides: str, wandb: bool = False, timeout: float = 600
) -> subprocess.CompletedProcess:
    """`train.py -m <overrides>` on the demo collection, shrunk by FAST (wandb offline if asked)."""
    fast = [o for o in FAST if not (wandb and o.startswith("logger="))]
    return run_script(
        "train.py",
        "-m",
        *fast,
        *overrides,  # after FAST: of two values of one key, Hydra keeps the last
        f"data.demo_dir={demo_dir}",
        f"hydra.sweep.dir={sweep_dir}",
        timeout=timeout,
    )


def read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file with a header."""
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def wait_for(condition, timeout: float, process: subprocess.Popen | None = None) -> None:
    """Poll `condition()` until it holds; fail if `timeout` passes or `process` ends first."""
    deadline = time.time() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            pytest.fail(f"the process ended (exit {process.returncode}) before the condition")
        if time.time() > deadline:
            pytest.fail("timed out waiting")
        time.sleep(0.05)


def assert_ok(process: subprocess.CompletedProcess) -> None:
    """Fail with the tail of the process's output when it did not exit 0."""
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-6000:]


@dataclass(frozen=True)
class Sweep:
    """A finished sweep: its folder and what its command printed."""

    path: Path
    output: str

    def rows(self) -> list[dict[str, str]]:
        """The rows of its `summary.csv`, in job order."""
        with (self.path / "summary.csv").open() as handle:
            return list(csv.DictReader(handle))

    def job_dir(self, task_id: str) -> Path:
        """The folder of the job that trained `task_id`."""
        return next(Path(row["job_dir"]) for row in self.rows() if row["task"] == task_id)


def sweep_once(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    demo_dir: Path,
    *overrides: str,
    wandb: bool = False,
) -> Sweep:
    """`run_sweep` once per test run (`made_once`), its output kept beside the sweep folder."""

    def make(folder: Path) -> None:
        process = run_sweep(folder / "sweep", demo_dir, *overrides, wandb=wandb)
        (folder / "output.txt").write_text(process.stdout + process.stderr)
        assert_ok(process)

    folder = made_once(tmp_path_factory, name, make)
    return Sweep(folder / "sweep", (folder / "output.txt").read_text())


@pytest.fixture(scope="session")
def all_tasks_sweep(tmp_path_factory: pytest.TempPathFactory, demo_dir: Path) -> Sweep:
    """`experiment=all_tasks` shrunk by FAST, two jobs at a time: one trained run per task."""
    return sweep_once(
        tmp_path_factory,
        "all_tasks",
        demo_dir,
        "experiment=all_tasks",
        "trainer=default",
        "model.head=pretrained",  # tiny_vgg's own, not the study's new head
        # Models that learn something in two epochs (at the study's 1e-5 the tiny model names
        # one class for everything): the pipeline's routing tests need stage 1 to vary.
        "optimizer.lr=1e-3",
        "hydra.launcher.max_parallel=2",
        "hydra.launcher.cuda_devices=[0,1]",
    )


def moved_run(job_dir: Path, to: Path) -> dict[str, str]:
    """A copy of a run folder whose best checkpoint names the copy's split, as a run result."""
    shutil.copytree(job_dir, to)
    checkpoint = to / "checkpoints" / "best.ckpt"
    contents = torch.load(checkpoint, weights_only=True)
    contents["hyper_parameters"]["split_file"] = str(to / "split.csv")
    torch.save(contents, checkpoint)
    return {"checkpoint": str(checkpoint)}
