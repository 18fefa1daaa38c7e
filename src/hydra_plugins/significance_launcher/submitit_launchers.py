"""hydra-submitit-launcher's launchers, with what our sweeps add around their jobs.

submitit submits, waits, requeues a job that SLURM stops at its time limit (up to
`max_num_timeout` times; the job then resumes from its last checkpoint: `resume=auto`) and
gathers the results; scheduling stays its own. Around it, as the subprocess launcher does:
jobs finished in an earlier run of the sweep are not submitted at all, every job joins the
sweep's wandb group, a job that dies fails alone, and `summary.csv` and `results.md` are
written when the jobs have ended. `SlurmLauncher` is `hydra/launcher=slurm`; `LocalLauncher`
(`hydra/launcher=slurm_local`) runs the same path with submitit's local executor, to try a
sweep's setup without a cluster.
"""

# No `from __future__ import annotations`: Hydra execs plugin modules outside sys.modules.

import logging
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

from hydra_plugins.significance_launcher.sweep_record import (
    SweepJob,
    begin_batch,
    compose_jobs,
    finish_sweep,
    job_return,
    summary_row,
    with_group,
    write_summary,
)
from significance.run_files import finished_result

log = logging.getLogger(__name__)

try:  # the `cluster` extra; without it these launchers do not exist
    from hydra_plugins.hydra_submitit_launcher import submitit_launcher
except ImportError:  # pragma: no cover - exercised only where the extra is not installed
    submitit_launcher = None


class _SweepRecordMixin:
    """`launch` and the job function of a submitit launcher, with our sweep's records."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Any:
        """Submit the jobs that have not finished before, wait for all, record every one.

        Each job is submitted and awaited on its own (a thread each, at most
        `array_parallelism` queued at once): submitit's own launch gives up on the whole
        sweep when one job dies outside Python (out of memory, time limit, node lost), and
        numbers the jobs it is given from 0, where a rerun that skips finished jobs needs
        each job to keep its number, hence its folder.
        """
        sweep_dir = Path(str(self.config.hydra.sweep.dir)).resolve()
        sweep_dir.mkdir(parents=True, exist_ok=True)
        jobs = compose_jobs(self.hydra_context, self.config, initial_job_idx, job_overrides)
        objective, earlier = begin_batch(self.config, sweep_dir, initial_job_idx)
        todo = [job for job in jobs if job.config is not None and not job.finished_before]
        submitted = {job.index for job in todo}
        for job in jobs:
            if job.config is not None and job.index not in submitted:
                log.info("#%d finished in an earlier run of this sweep: skipped", job.index)
        completed: dict[int, bool] = {}
        slots = threading.Semaphore(int(self.params.get("array_parallelism") or 0) or len(jobs))
        threads = [
            threading.Thread(
                target=self._submit_one, args=(job, sweep_dir, slots, completed), daemon=True
            )
            for job in todo
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():  # short joins: Ctrl-C still reaches this thread
                thread.join(0.5)
        rows = {}
        for job in jobs:
            if job.config is None or (job.index in submitted and not completed.get(job.index)):
                status = "failed"
            elif job.index not in submitted:
                status = "skipped"
            else:
                status = "ok" if finished_result(job.job_dir) is not None else "failed"
            rows[job.index] = summary_row(job, status)
        write_summary(sweep_dir, [*earlier, *rows.values()])
        finish_sweep(sweep_dir, [*earlier, *(rows[index] for index in sorted(rows))])
        return [job_return(job, rows[job.index], sweep_dir, objective) for job in jobs]

    def _submit_one(
        self,
        job: SweepJob,
        sweep_dir: Path,
        slots: threading.Semaphore,
        completed: dict[int, bool],
    ) -> None:
        """Submit one job under its own number and wait for it; a job that dies fails alone."""
        with slots:
            try:
                (record,) = super().launch([with_group(job.overrides, sweep_dir)], job.index)
                completed[job.index] = record.status == JobStatus.COMPLETED
                if not completed[job.index]:  # Hydra kept the job's exception
                    job.error = submitit_failure(record._return_value)
                    ended = slurm_end(OmegaConf.select(record.hydra_cfg, "hydra.job.id"))
                    if ended:  # cancelled, say: that is why, whatever Python made of it
                        job.error = f"the SLURM job ended {ended} ({job.error})"
            except Exception as error:  # refused by sbatch, or it died outside Python
                job.error = submitit_failure(error)
                completed[job.index] = False

    def __call__(self, sweep_overrides: list[str], *arguments: Any) -> JobReturn:
        """The job, in each of its tasks: as train.py would set up, each rank with its own log.

        This process unpickled the launcher, not train.py: our resolvers and log filter first.
        The time-limit signal is noted from now on, and acted on once training can save.
        """
        from significance.config import register_resolvers
        from significance.entry import hide_lightning_tips
        from significance.training.time_limit import take_over_time_limit_signal

        register_resolvers()
        hide_lightning_tips()
        take_over_time_limit_signal()
        return super().__call__([*sweep_overrides, *rank_overrides(self.config)], *arguments)


def submitit_failure(error: Exception) -> str:
    """Why submitit gave up on a job, in one line: SLURM's own words where it gave them."""
    text = str(error).strip()
    ended = re.search(r"has not produced any output \(state: ([^)]*)\)", text)
    if ended:  # cancelled, out of time or memory, node lost: it wrote no result
        return f"the SLURM job ended without a result (state {ended.group(1)})"
    lines = [line.strip() for line in text.splitlines() if line.strip()] or [""]
    if lines[0].startswith("sbatch: "):  # refused at submission: every line of sbatch's
        return "; ".join(lines)
    return f"{type(error).__name__}: {lines[0]}"


def slurm_end(job_id: Any, wait_s: float = 30) -> str:
    """The state SLURM's accounting gives a job that did not complete, '' if none or unknown."""
    if not job_id or not shutil.which("sacct"):
        return ""
    deadline = time.monotonic() + wait_s
    while True:  # a job's processes may outlive its result file by a moment
        command = ["sacct", "--noheader", "--parsable2", "--allocations", "--format=State"]
        done = subprocess.run([*command, f"--jobs={job_id}"], capture_output=True, text=True)
        lines = done.stdout.strip().splitlines() if done.returncode == 0 else []
        state = lines[-1].strip() if lines else ""  # the latest run of a requeued job
        if state not in ("RUNNING", "COMPLETING", "PENDING") or time.monotonic() > deadline:
            break
        time.sleep(1)
    return "" if state in ("COMPLETED", "FAILED", "RUNNING", "COMPLETING", "PENDING") else state


def rank_overrides(config: Any) -> list[str]:
    """A DDP rank other than 0 (an srun task): its own log file, and no second `.hydra/`.

    As Lightning names the ranks it starts itself (`train_ddp_process_1.log`).
    """
    rank = int(os.environ.get("SLURM_PROCID", "0"))
    if rank == 0:
        return []
    name = config.hydra.job.name
    return [f"hydra.job.name={name}_ddp_process_{rank}", "hydra.output_subdir=null"]


if submitit_launcher is not None:

    class SlurmLauncher(_SweepRecordMixin, submitit_launcher.SlurmLauncher):
        """Sweep jobs as SLURM jobs (`hydra/launcher=slurm`)."""

    class LocalLauncher(_SweepRecordMixin, submitit_launcher.LocalLauncher):
        """Sweep jobs through submitit on this machine (`hydra/launcher=slurm_local`)."""
