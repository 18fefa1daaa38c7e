"""A Hydra launcher that runs every sweep job as a fresh single-run process of the same script.

Why: Lightning's DDP launcher starts ranks 1..N-1 by re-running `sys.argv`. Inside Hydra's
own multirun that re-runs the whole sweep in every rank (Lightning #11300). Here each job is
`python train.py <its overrides> hydra.run.dir=<job dir>`, a plain single run, so Lightning
handles DDP as it was built to: one process group, one output folder and one wandb run a job.
A failed job is recorded and the sweep goes on; `summary.csv` gets a row per job as it ends,
and the sweep exits non-zero at the end if any job failed.
"""

# No `from __future__ import annotations`: Hydra execs plugin modules outside sys.modules,
# where dataclasses cannot resolve string annotations.

import csv
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from significance.processes import (
    FINISHED_STATUSES,
    RESULT_FILE,
    SUMMARY_FILE,
    SweepJobFailed,
    end_process_group,
    start_process_group,
    stop_process_group,
)
from significance.resume import finished_result

log = logging.getLogger(__name__)

SUMMARY_COLUMNS = (
    "job",
    "task",
    "seed",
    "status",
    "best_val_acc",
    "test_acc",
    "test_acc_macro",
    "test_f1_macro",
    "checkpoint",
    "wall_time_s",
    "exit_code",
    "job_dir",
    "overrides",
)


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
    index: int
    overrides: list[str]
    job_dir: Path
    config: DictConfig | None
    process: subprocess.Popen | None
    started: float
    error: str = ""
    skipped: bool = False  # finished in an earlier run of this sweep (its result.json says ok)
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
        log.info(
            "Launching %d jobs into %s, %d at a time, each in its own process",
            len(job_overrides),
            sweep_dir,
            self.max_parallel,
        )
        pending = [(initial_job_idx + i, list(o)) for i, o in enumerate(job_overrides)]
        running: list[_Job] = []
        finished: dict[int, tuple[_Job, dict[str, Any]]] = {}
        try:
            while pending or running:
                while pending and len(running) < self.max_parallel:
                    job = self._start(*pending.pop(0), sweep_dir, self._free_devices(running))
                    if job.process is None:
                        finished[job.index] = (job, self._row(job, None))
                        self._write_summary(sweep_dir, finished)
                    else:
                        running.append(job)
                time.sleep(0.2)
                for job in [j for j in running if j.process.poll() is not None]:
                    end_process_group(job.process)  # any rank left behind by a dead rank 0
                    running.remove(job)
                    finished[job.index] = (job, self._row(job, job.process.returncode))
                    self._write_summary(sweep_dir, finished)
        except BaseException:  # Ctrl-C: the jobs are in their own process groups
            for job in running:
                stop_process_group(job.process)
            raise
        returns = [self._job_return(*finished[index], sweep_dir) for index in sorted(finished)]
        failed = [r for r in returns if r.status == JobStatus.FAILED]
        log.info(
            "Sweep finished: %d ok, %d failed; summary in %s",
            len(returns) - len(failed),
            len(failed),
            sweep_dir / SUMMARY_FILE,
        )
        try:  # imported here: Hydra imports every plugin at start, this pulls in torch
            from significance.reporting.sweep import write_sweep_report

            write_sweep_report(sweep_dir)
        except Exception:  # the jobs' results stand; `python report.py sweep_dir=...` retries
            log.exception("Could not write the sweep's results.md")
        return returns

    def _free_devices(self, running: list[_Job]) -> str | None:
        """The `cuda_devices` entry with the fewest running jobs (the first among equals)."""
        if not self.cuda_devices:
            return None
        load = {slot: 0 for slot in self.cuda_devices}
        for job in running:
            load[job.cuda_devices] = load.get(job.cuda_devices, 0) + 1
        return min(self.cuda_devices, key=lambda slot: load[slot])

    def _start(
        self, index: int, overrides: list[str], sweep_dir: Path, cuda_devices: str | None = None
    ) -> _Job:
        """Compose the job's config to find its folder, then start its process."""
        log.info("#%d : %s", index, " ".join(filter_overrides(overrides)))
        try:
            config = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
            with open_dict(config):
                config.hydra.job.id = index
                config.hydra.job.num = index
            HydraConfig.instance().set_config(config)
            job_dir = sweep_dir / str(OmegaConf.select(config, "hydra.sweep.subdir"))
        except Exception as error:  # a bad override fails this job alone
            log.error("#%d cannot be composed: %s", index, error)
            return _Job(
                index,
                overrides,
                sweep_dir / f"{index}_failed",
                None,
                None,
                time.time(),
                error=f"{type(error).__name__}: {error}",
            )
        # resume=false retrains even a finished job; otherwise its results stand.
        if finished_result(job_dir) is not None and OmegaConf.select(config, "resume") is not False:
            log.info("#%d finished in an earlier run of this sweep: skipped", index)
            return _Job(index, overrides, job_dir, config, None, time.time(), skipped=True)
        job_dir.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            sys.argv[0],
            *self._config_arguments(),
            *overrides,
            f"hydra.run.dir={_quote(job_dir)}",
        ]
        if not any(o.split("=", 1)[0].lstrip("+~") == "group" for o in overrides):
            command.append(f"group={_quote(sweep_dir.name)}")
        output = None if self.max_parallel == 1 else (job_dir / "job.log").open("ab")
        environment = None
        if cuda_devices is not None:
            log.info("#%d on CUDA_VISIBLE_DEVICES=%s", index, cuda_devices)
            environment = {**os.environ, "CUDA_VISIBLE_DEVICES": cuda_devices}
        process = start_process_group(command, output, environment)
        if output is not None:
            output.close()
        return _Job(
            index, overrides, job_dir, config, process, time.time(), cuda_devices=cuda_devices
        )

    def _config_arguments(self) -> list[str]:
        """`--config-name` and any `--config-dir` this sweep was started with."""
        assert self.config is not None
        arguments = [f"--config-name={self.config.hydra.job.config_name}"]
        for source in self.config.hydra.runtime.config_sources:
            if source.provider == "command-line" and source.schema == "file":
                arguments.append(f"--config-dir={source.path}")
        return arguments

    def _row(self, job: _Job, exit_code: int | None) -> dict[str, Any]:
        """The job's line of `summary.csv`."""
        result_file = job.job_dir / RESULT_FILE
        result = json.loads(result_file.read_text()) if result_file.is_file() else {}
        ok = job.skipped or (exit_code == 0 and result.get("status") == "ok")
        task = OmegaConf.select(job.config, "task.id") if job.config is not None else None
        seed = OmegaConf.select(job.config, "seed") if job.config is not None else None
        row = {column: result.get(column, "") for column in SUMMARY_COLUMNS}
        elapsed = time.time() - job.started
        row.update(
            job=job.index,
            task=task or "",
            seed="" if seed is None else seed,
            status="skipped" if job.skipped else "ok" if ok else "failed",
            exit_code="" if exit_code is None else exit_code,
            wall_time_s=result.get("wall_time_s", "") if job.skipped else round(elapsed, 1),
            job_dir=str(job.job_dir),
            overrides=" ".join(job.overrides),
        )
        if not ok:
            reason = job.error or f"exit code {exit_code}"
            log.error(
                "#%d (%s) failed: %s; its log is in %s", job.index, row["task"], reason, job.job_dir
            )
        return row

    def _write_summary(self, sweep_dir: Path, finished: dict[int, tuple[_Job, dict]]) -> None:
        """Rewrite `summary.csv` atomically with every job finished so far."""
        path = sweep_dir / SUMMARY_FILE
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with temporary.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=SUMMARY_COLUMNS)
            writer.writeheader()
            writer.writerows(finished[index][1] for index in sorted(finished))
        os.replace(temporary, path)

    def _job_return(self, job: _Job, row: dict[str, Any], sweep_dir: Path) -> JobReturn:
        """Hydra's record of the job; a failed one raises when the sweeper reads its value."""
        job_return = JobReturn(overrides=job.overrides, working_dir=str(job.job_dir))
        job_return.cfg = job.config
        if row["status"] in FINISHED_STATUSES:
            job_return.status = JobStatus.COMPLETED
            job_return.return_value = row
        else:
            job_return.status = JobStatus.FAILED
            job_return.return_value = SweepJobFailed(
                f"sweep job #{job.index} ({row['task'] or ' '.join(job.overrides)}) failed "
                f"({job.error or 'exit code ' + str(row['exit_code'])}); "
                f"see {job.job_dir} and {sweep_dir / SUMMARY_FILE}"
            )
        return job_return


def _quote(path: Path | str) -> str:
    """A value quoted for Hydra's override grammar (paths may hold `:`, `=`, spaces)."""
    return "'" + str(path).replace("\\", "\\\\").replace("'", "\\'") + "'"
