"""A Hydra launcher that runs every sweep job as a fresh single-run process of the same script.

Why: Lightning's DDP launcher starts ranks 1..N-1 by re-running `sys.argv`. Inside Hydra's
own multirun that re-runs the whole sweep in every rank (Lightning #11300). Here each job is
`python train.py <its overrides> hydra.run.dir=<job dir>`, a plain single run, so Lightning
handles DDP as it was built to: one process group, one output folder and one wandb run a job.
A failed job is recorded and the sweep goes on; `summary.csv` gets a row per job as it ends,
and the sweep exits non-zero at the end if any job failed. Each job's result handed back to the
sweeper is its objective (`best_val_acc` unless `objective=...`), the figure a search optimizes.
"""

# No `from __future__ import annotations`: Hydra execs plugin modules outside sys.modules,
# where dataclasses cannot resolve string annotations.

import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, configure_log, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from hydra_plugins.significance_launcher.sweep_record import (
    SweepJob,
    begin_batch,
    compose_jobs,
    finish_sweep,
    job_return,
    quote,
    summary_row,
    with_group,
    write_summary,
)
from significance.process_groups import end_process_group, start_process_group, stop_process_group
from significance.run_files import finished_result

log = logging.getLogger(__name__)


@dataclass
class SubprocessLauncherConf:
    _target_: str = "hydra_plugins.significance_launcher.subprocess_launcher.SubprocessLauncher"
    # Jobs run at once. Each job may itself use several devices (trainer.devices).
    max_parallel: int = 1
    # CUDA_VISIBLE_DEVICES of each job: every job starts on the entry with the fewest jobs
    # running. [0] with max_parallel=4: four jobs share GPU 0; [0,1,2,3]: one GPU each;
    # ["0,1","2,3"]: two DDP jobs of two GPUs each. null: every job sees every device.
    # Optional[...], not `| None`: OmegaConf 2.3 structured configs read only typing's unions.
    cuda_devices: Optional[list[str]] = None  # noqa: UP045


ConfigStore.instance().store(
    group="hydra/launcher", name="subprocess", node=SubprocessLauncherConf, provider="significance"
)


@dataclass
class _Job:
    """A running job: its process, when it started, the devices it was given."""

    job: SweepJob
    process: subprocess.Popen
    started: float
    cuda_devices: str | None = None


class SubprocessLauncher(Launcher):
    """Runs each job of a sweep in its own process, in Hydra's single-run mode."""

    def __init__(self, max_parallel: int = 1, cuda_devices: list | None = None) -> None:
        self.max_parallel = max(1, int(max_parallel))
        self.cuda_devices = [str(slot) for slot in cuda_devices or []]
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.hydra_context = hydra_context

    def launch(self, job_overrides: Any, initial_job_idx: int) -> list[JobReturn]:
        """Run the jobs, at most `max_parallel` at once; return their results in order."""
        setup_globals()
        assert self.config is not None and self.hydra_context is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir)).resolve()
        sweep_dir.mkdir(parents=True, exist_ok=True)
        pending = compose_jobs(self.hydra_context, self.config, initial_job_idx, job_overrides)
        objective, earlier = begin_batch(self.config, sweep_dir, initial_job_idx)
        log.info(
            "Launching %d jobs into %s, %d at a time, each in its own process",
            len(job_overrides),
            sweep_dir,
            self.max_parallel,
        )
        running: list[_Job] = []
        finished: dict[int, tuple[SweepJob, dict[str, Any]]] = {}

        def record(job: SweepJob, row: dict[str, Any]) -> None:
            finished[job.index] = (job, row)
            write_summary(sweep_dir, [*earlier, *(row for _, row in finished.values())])

        try:
            while pending or running:
                while pending and len(running) < self.max_parallel:
                    job = pending.pop(0)
                    if job.config is None:
                        record(job, summary_row(job, "failed"))
                    elif job.finished_before:  # resume=false retrains even a finished job
                        log.info("#%d finished in an earlier run of this sweep: skipped", job.index)
                        record(job, summary_row(job, "skipped"))
                    else:
                        running.append(self._start(job, sweep_dir, self._free_devices(running)))
                time.sleep(0.2)
                for done in [j for j in running if j.process.poll() is not None]:
                    end_process_group(done.process)  # any rank left behind by a dead rank 0
                    running.remove(done)
                    code = done.process.returncode
                    result = finished_result(done.job.job_dir)
                    status = "ok" if code == 0 and result is not None else "failed"
                    wall_time = round(time.time() - done.started, 1)
                    record(done.job, summary_row(done.job, status, wall_time, code))
        except BaseException:  # Ctrl-C: the jobs are in their own process groups
            for job in running:
                stop_process_group(job.process)
            raise
        rows = [finished[index][1] for index in sorted(finished)]
        finish_sweep(sweep_dir, [*earlier, *rows])
        return [job_return(*finished[i], sweep_dir, objective) for i in sorted(finished)]

    def _free_devices(self, running: list[_Job]) -> str | None:
        """The `cuda_devices` entry with the fewest running jobs (the first among equals)."""
        if not self.cuda_devices:
            return None
        load = {slot: 0 for slot in self.cuda_devices}
        for job in running:
            load[job.cuda_devices] = load.get(job.cuda_devices, 0) + 1
        return min(self.cuda_devices, key=lambda slot: load[slot])

    def _start(self, job: SweepJob, sweep_dir: Path, cuda_devices: str | None = None) -> _Job:
        """Start the job's process: `<this script> <its overrides> hydra.run.dir=<its folder>`."""
        job.job_dir.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            sys.argv[0],
            *self._config_arguments(),
            *with_group(job.overrides, sweep_dir),
            f"hydra.run.dir={quote(job.job_dir)}",
        ]
        output = None if self.max_parallel == 1 else (job.job_dir / "job.log").open("ab")
        environment = None
        if cuda_devices is not None:
            log.info("#%d on CUDA_VISIBLE_DEVICES=%s", job.index, cuda_devices)
            environment = {**os.environ, "CUDA_VISIBLE_DEVICES": cuda_devices}
        process = start_process_group(command, output, environment)
        if output is not None:
            output.close()
        return _Job(job, process, time.time(), cuda_devices=cuda_devices)

    def _config_arguments(self) -> list[str]:
        """`--config-name` and any `--config-dir` this sweep was started with."""
        assert self.config is not None
        arguments = [f"--config-name={self.config.hydra.job.config_name}"]
        for source in self.config.hydra.runtime.config_sources:
            if source.provider == "command-line" and source.schema == "file":
                arguments.append(f"--config-dir={source.path}")
        return arguments
