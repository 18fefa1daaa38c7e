"""hydra-submitit-launcher's launchers, with what our sweeps add around their jobs.

submitit submits, waits, requeues a job that SLURM stops at its time limit (the job then
resumes from its last checkpoint: `resume=auto`) and gathers the results; scheduling stays
its own. Around it, as the subprocess launcher does: jobs finished in an earlier run of the
sweep are not submitted at all, every job joins the sweep's wandb group, and `summary.csv`
and `results.md` are written when the jobs have ended, even when some failed.
`SlurmLauncher` is `hydra/launcher=slurm`; `LocalLauncher` (`hydra/launcher=slurm_local`) runs
the same path with submitit's local executor, to try a sweep's setup without a cluster.
"""

# No `from __future__ import annotations`: Hydra execs plugin modules outside sys.modules.

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus

from hydra_plugins.significance_launcher.sweep_record import (
    compose_job,
    finish_sweep,
    job_return,
    summary_row,
    with_group,
    write_summary,
)
from significance.resume import finished_result

log = logging.getLogger(__name__)

try:  # the `cluster` extra; without it these launchers do not exist
    from hydra_plugins.hydra_submitit_launcher import submitit_launcher
except ImportError:  # pragma: no cover - exercised only where the extra is not installed
    submitit_launcher = None


class _SweepRecordMixin:
    """`launch` and the job function of a submitit launcher, with our sweep's records."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Any:
        """Submit the jobs that have not finished before, wait for all, record every one."""
        sweep_dir = Path(str(self.config.hydra.sweep.dir)).resolve()
        sweep_dir.mkdir(parents=True, exist_ok=True)
        jobs = [
            compose_job(self.hydra_context, self.config, initial_job_idx + i, overrides)
            for i, overrides in enumerate(job_overrides)
        ]
        todo = [job for job in jobs if job.config is not None and not job.finished_before]
        submitted = {job.index for job in todo}
        for job in jobs:
            if job.config is not None and job.index not in submitted:
                log.info("#%d finished in an earlier run of this sweep: skipped", job.index)
        # submitit numbers the submitted jobs 0..n-1; `__call__` maps them back to ours.
        self.job_numbers = [job.index for job in todo]
        completed: set[int] = set()
        try:
            if todo:
                overrides = [with_group(job.overrides, sweep_dir) for job in todo]
                returns = super().launch(overrides, 0)
                completed = {
                    job.index
                    for job, record in zip(todo, returns, strict=True)
                    if record.status == JobStatus.COMPLETED
                }
        finally:  # also when submitit gives up on a job: every row is written
            rows = {}
            for job in jobs:
                if job.config is None:
                    status = "failed"
                elif job.index not in submitted:
                    status = "skipped"
                elif job.index in completed and finished_result(job.job_dir) is not None:
                    status = "ok"
                else:
                    status = "failed"
                rows[job.index] = summary_row(job, status)
            write_summary(sweep_dir, rows.values())
            finish_sweep(sweep_dir, [rows[index] for index in sorted(rows)])
        return [job_return(job, rows[job.index], sweep_dir) for job in jobs]

    def __call__(
        self,
        sweep_overrides: list[str],
        job_dir_key: str,
        job_num: int,
        job_id: str,
        singleton_state: dict,
    ) -> JobReturn:
        """The job, on its node: our resolvers, then Hydra's run of it under its own number."""
        from significance.config import register_resolvers

        register_resolvers()  # the job unpickles this launcher, not the entry script
        numbers = getattr(self, "job_numbers", [])
        number = numbers[job_num] if job_num < len(numbers) else job_num
        return super().__call__(sweep_overrides, job_dir_key, number, job_id, singleton_state)


if submitit_launcher is not None:

    class SlurmLauncher(_SweepRecordMixin, submitit_launcher.SlurmLauncher):
        """Sweep jobs as SLURM jobs (`hydra/launcher=slurm`)."""

    class LocalLauncher(_SweepRecordMixin, submitit_launcher.LocalLauncher):
        """Sweep jobs through submitit on this machine (`hydra/launcher=slurm_local`)."""
