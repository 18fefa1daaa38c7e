"""What every launcher of ours does around a sweep's jobs, whatever runs them.

A job's folder is found by composing its config; a job whose folder holds a finished
`result.json` is skipped on a rerun; every job joins the wandb group of its sweep; each job
ends as a row of `summary.csv`; and the sweep's `results.md` is written once all have ended.
A sweeper that searches (Optuna's) calls the launcher once per batch of trials: every batch
adds its rows to those of the batches before, and each job hands back its objective.
"""

# No `from __future__ import annotations`: Hydra execs plugin modules outside sys.modules.
# Light imports only: Hydra imports every plugin module at start; torch waits for the end.

import csv
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra.types import HydraContext
from omegaconf import DictConfig, OmegaConf, open_dict

from significance.errors import ConfigurationError, SweepJobFailed
from significance.files import atomic_write
from significance.run_files import (
    FINISHED_STATUSES,
    RESULT_FILE,
    SEARCH_FILE,
    SUMMARY_FILE,
    finished_result,
)
from significance.run_settings import conflicting_settings, length_changed
from significance.search import objective_name, objective_value, search_of, write_search

log = logging.getLogger(__name__)

SUMMARY_COLUMNS = (
    "job",
    "task",
    "seed",
    "fold",  # data.fold: the cross-validation fold the job tested on; empty without folds
    "status",
    "best_val_acc",
    "best_epoch",
    "test_acc",
    "test_selected_acc",  # report_test_selected: the best test accuracy over epochs (the study's)
    "test_acc_macro",
    "test_balanced_acc",  # the mean of the classes' recalls: not fooled by a majority class
    "test_f1_macro",
    "checkpoint",
    "wall_time_s",
    "exit_code",
    "reason",  # why a failed job failed, as far as the launcher knows
    "job_dir",
    "overrides",
)


@dataclass
class SweepJob:
    """One job of a sweep: its number, overrides, composed config and folder."""

    index: int
    overrides: list[str]
    job_dir: Path
    config: Optional[DictConfig]  # noqa: UP045  None when the overrides do not compose
    error: str = ""
    conflict: str = ""  # the settings in which its folder's earlier run differs (run_settings)

    @property
    def finished_before(self) -> bool:
        """Its folder holds a finished result, of the length asked, and `resume` is not false."""
        if self.config is None or OmegaConf.select(self.config, "resume") is False:
            return False
        finished = finished_result(self.job_dir) is not None
        return finished and not length_changed(self.job_dir, self.config)


def compose_job(
    hydra_context: HydraContext, sweep_config: DictConfig, index: int, overrides: Sequence[str]
) -> SweepJob:
    """The job's config and folder, as the job itself will compose them."""
    sweep_dir = Path(str(sweep_config.hydra.sweep.dir)).resolve()
    log.info("#%d : %s", index, " ".join(filter_overrides(overrides)))
    try:
        config = hydra_context.config_loader.load_sweep_config(sweep_config, list(overrides))
        with open_dict(config):
            config.hydra.job.id = index
            config.hydra.job.num = index
        HydraConfig.instance().set_config(config)
        job_dir = sweep_dir / str(OmegaConf.select(config, "hydra.sweep.subdir"))
    except Exception as error:  # a bad override fails this job alone
        log.error("#%d cannot be composed: %s", index, error)
        return SweepJob(
            index, list(overrides), sweep_dir / f"{index}_failed", None, _describe(error)
        )
    retrain = OmegaConf.select(config, "resume") is False
    conflict = "" if retrain else conflicting_settings(job_dir, config)
    return SweepJob(index, list(overrides), job_dir, config, conflict=conflict)


def compose_jobs(
    hydra_context: HydraContext,
    sweep_config: DictConfig,
    initial_job_idx: int,
    job_overrides: Sequence[Sequence[str]],
) -> list[SweepJob]:
    """Every job of a batch composed (`compose_job`), refused whole if any would resume or skip
    a run of other settings (`refuse_other_settings`)."""
    jobs = [
        compose_job(hydra_context, sweep_config, initial_job_idx + i, list(overrides))
        for i, overrides in enumerate(job_overrides)
    ]
    refuse_other_settings(Path(str(sweep_config.hydra.sweep.dir)).resolve(), jobs)
    return jobs


def refuse_other_settings(sweep_dir: Path, jobs: Sequence[SweepJob]) -> None:
    """Stop, before any job runs or any record of the sweep is rewritten, if an earlier run of
    it with other settings left its jobs here: resumed or skipped, their figures would stand
    for these settings."""
    refused = [job for job in jobs if job.conflict]
    if not refused:
        return
    named = "; ".join(f"#{job.index} ({job.conflict})" for job in refused[:2])
    more = f" and {len(refused) - 2} more jobs" if len(refused) > 2 else ""
    raise ConfigurationError(
        f"{sweep_dir} holds an earlier run of this sweep with other settings: {named}{more}. "
        "Run the sweep into a new folder (hydra.sweep.dir), or add resume=false to train "
        "every job afresh there"
    )


def with_group(overrides: Sequence[str], sweep_dir: Path) -> list[str]:
    """The overrides, with the sweep folder's name as the wandb group unless one is given."""
    if any(o.split("=", 1)[0].lstrip("+~") == "group" for o in overrides):
        return list(overrides)
    return [*overrides, f"group={quote(sweep_dir.name)}"]


def summary_row(
    job: SweepJob,
    status: str,
    wall_time_s: float | str = "",
    exit_code: int | str = "",
) -> dict[str, Any]:
    """The job's line of `summary.csv`: `status` is ok, skipped or failed."""
    result_file = job.job_dir / RESULT_FILE
    try:
        result = json.loads(result_file.read_text()) if result_file.is_file() else {}
    except ValueError:
        result = {}
    row = {column: result.get(column, "") for column in SUMMARY_COLUMNS}
    config = job.config
    seed = OmegaConf.select(config, "seed") if config is not None else None
    fold = OmegaConf.select(config, "data.fold") if config is not None else None
    if status == "skipped" or wall_time_s == "":
        wall_time_s = result.get("wall_time_s", "")
    row.update(
        job=job.index,
        task=(OmegaConf.select(config, "task.id") if config is not None else None) or "",
        seed="" if seed is None else seed,
        fold="" if fold is None else fold,
        status=status,
        exit_code=exit_code,
        wall_time_s=wall_time_s,
        job_dir=str(job.job_dir),
        overrides=" ".join(job.overrides),
    )
    if status not in FINISHED_STATUSES:
        reason = row["reason"] = failure_reason(job, exit_code)
        log.error(
            "#%d (%s) failed: %s; its log is in %s", job.index, row["task"], reason, job.job_dir
        )
    return row


def write_summary(sweep_dir: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Rewrite `summary.csv` atomically with the given rows, in job order."""
    path = sweep_dir / SUMMARY_FILE
    with atomic_write(path, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=SUMMARY_COLUMNS)
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda row: int(row["job"])))


def begin_batch(
    sweep_config: DictConfig, sweep_dir: Path, initial_job_idx: int
) -> tuple[str, list[dict[str, Any]]]:
    """Before a batch: record the search (if it is one); its objective, the earlier batches' rows.

    A batch starting at job 0 starts the sweep afresh; a later one (a search's next trials)
    keeps the rows of the jobs numbered before it, so summary.csv gathers every batch.
    """
    search = search_of(sweep_config)  # a bad objective or direction stops before any job
    path = sweep_dir / SUMMARY_FILE
    if search is not None and initial_job_idx == 0 and path.is_file():
        # Its trials' folders would be taken for the new trials' (same names, other settings).
        raise ConfigurationError(
            f"{sweep_dir} holds an earlier sweep: start a search in a new sweep folder "
            "(hydra.sweep.dir)"
        )
    if search is not None:
        write_search(sweep_dir, search)
    elif initial_job_idx == 0:
        (sweep_dir / SEARCH_FILE).unlink(missing_ok=True)  # no longer a search's folder
    earlier = []
    if initial_job_idx > 0 and path.is_file():
        with path.open(newline="") as handle:
            earlier = [row for row in csv.DictReader(handle) if int(row["job"]) < initial_job_idx]
    return objective_name(sweep_config), earlier


def job_return(job: SweepJob, row: dict[str, Any], sweep_dir: Path, objective: str) -> JobReturn:
    """Hydra's record of a job: its `objective` (None if it has none), or, failed, an error.

    A sweeper reads the value: Optuna's makes it the trial's; a failed job's raises there.
    """
    record = JobReturn(overrides=job.overrides, working_dir=str(job.job_dir))
    record.cfg = job.config
    if row["status"] in FINISHED_STATUSES:
        record.status = JobStatus.COMPLETED
        record.return_value = objective_value(finished_result(job.job_dir), objective)
        searching = job.config is not None and search_of(job.config) is not None
        level = logging.INFO if searching else logging.DEBUG  # only a search's sweeper reads it
        log.log(
            level, "#%d: %s = %s, handed to the sweeper", job.index, objective, record.return_value
        )
    else:
        record.status = JobStatus.FAILED
        record.return_value = SweepJobFailed(
            f"sweep job #{job.index} ({row['task'] or ' '.join(job.overrides)}) failed "
            f"({failure_reason(job, row['exit_code'])}); see {job.job_dir} and "
            f"{sweep_dir / SUMMARY_FILE}"
        )
    return record


def finish_sweep(sweep_dir: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Log the tally and write the sweep's `results.md` (its jobs' results stand regardless)."""
    statuses = [row["status"] for row in rows]
    failed = sum(status not in FINISHED_STATUSES for status in statuses)
    log.info(
        "Sweep finished: %d ok (%d of them skipped, finished before), %d failed; summary in %s",
        len(rows) - failed,
        statuses.count("skipped"),
        failed,
        sweep_dir / SUMMARY_FILE,
    )
    try:  # imported here: Hydra imports every plugin at start, this pulls in torch
        from significance.reporting.sweep import write_sweep_report

        write_sweep_report(sweep_dir)
    except Exception:  # `python report.py sweep_dir=...` retries
        log.exception("Could not write the sweep's results.md")


def failure_reason(job: SweepJob, exit_code: int | str = "") -> str:
    """Why a job failed, as far as the launcher knows."""
    return job.error or (f"exit code {exit_code}" if exit_code != "" else "see its log")


def quote(value: Path | str) -> str:
    """A value quoted for Hydra's override grammar (paths may hold `:`, `=`, spaces)."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
