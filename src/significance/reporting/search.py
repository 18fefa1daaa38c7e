"""A hyperparameter search's `results.md`: its trials ranked on validation, the best one tested.

The trials are compared on the validation figure the search optimized (`search.json`); only
the trial so chosen has its test figures shown, once: choosing among trials by a test figure
would be choosing on the test split. Written after every batch of trials, so that the file
always describes the search so far; the last batch's is the search's result.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from significance.errors import InputError
from significance.reporting.sweep import (
    RESULTS_COLUMNS,
    RESULTS_CSV,
    TRAINING_SHARE_NOTE,
    Configuration,
    overview_table,
    per_class_table,
    results_rows,
)
from significance.reporting.tables import markdown_table, read_rows_csv, write_rows_csv
from significance.run_files import (
    FINISHED_STATUSES,
    PER_CLASS_FILE,
    RESULTS_FILE,
    SUMMARY_FILE,
    finished_result,
)
from significance.search import Search, objective_value

log = logging.getLogger(__name__)


@dataclass
class Trial:
    """One job of a search: its summary row, sampled settings and objective (None: none)."""

    row: dict[str, str]
    parameters: str
    objective: float | None

    @property
    def folder(self) -> str:
        """The name of its job folder (the sweep folder may have moved since)."""
        return Path(self.row["job_dir"]).name


def read_trials(sweep_dir: Path, search: Search) -> list[Trial]:
    """Every job of the search, in job order, with the settings the sweeper sampled for it."""
    summary = sweep_dir / SUMMARY_FILE
    if not summary.is_file():
        raise InputError(f"{summary} not found: is {sweep_dir} a sweep folder?")
    trials = []
    for row in read_rows_csv(summary):
        sampled = [
            item for item in row["overrides"].split() if item.split("=", 1)[0] in search.parameters
        ]
        result = None
        if row["status"] in FINISHED_STATUSES:
            result = finished_result(sweep_dir / Path(row["job_dir"]).name)
        trials.append(Trial(row, " ".join(sampled), objective_value(result, search.objective)))
    return trials


def best_trial(trials: list[Trial], search: Search) -> Trial | None:
    """The trial with the best objective, the first of equals (as Optuna chooses)."""
    values = {int(t.row["job"]): t.objective for t in trials if t.objective is not None}
    best = search.best(values)
    return next((t for t in trials if int(t.row["job"]) == best), None)


def tested_configuration(sweep_dir: Path, trial: Trial) -> Configuration | None:
    """The best trial's test figures as a one-seed configuration; None without them."""
    per_class = sweep_dir / trial.folder / "test" / PER_CLASS_FILE
    if not per_class.is_file():
        return None
    row = trial.row
    configuration = Configuration(row["task"], trial.parameters, [row["seed"]])
    configuration.tables.append(read_rows_csv(per_class))
    if row.get("test_selected_acc"):
        configuration.test_selected.append(float(row["test_selected_acc"]))
    return configuration


def trials_table(trials: list[Trial], search: Search) -> str:
    """One row per trial: status, objective on validation, sampled settings, folder."""
    rows = [
        [t.row["job"], t.row["status"], t.objective, f"`{t.parameters}`", f"`{t.folder}`"]
        for t in trials
    ]
    header = ("job", "status", f"{search.objective} (validation)", "settings", "folder")
    return markdown_table(header, rows)


def search_markdown(
    sweep_dir: Path,
    search: Search,
    trials: list[Trial],
    best: Trial | None,
    tested: Configuration | None,
) -> str:
    """The text of a search's results.md."""
    scored = sum(t.objective is not None for t in trials)
    parts = [
        f"# Hyperparameter search `{sweep_dir.name}`",
        f"{scored} of {len(trials)} trials finished with a `{search.objective}`, the "
        f"validation figure the search was told to {search.direction}. The best trial is "
        "chosen on that figure alone, and its test figures are the only ones shown: choosing "
        "among trials by a test figure would be choosing on the test split. Its validation "
        f"figure is optimistic: it is the best of {scored}.",
        "## Trials\n\n" + trials_table(trials, search),
    ]
    if best is None:
        parts.append("## Best trial\n\nNo trial finished with a value: nothing to report.")
        return "\n\n".join(parts) + "\n"
    heading = (
        f"## Best trial: job {best.row['job']} (`{best.parameters}`)\n\n"
        f"`{search.objective}` = {best.objective:.4f} on validation, in `{best.folder}`."
    )
    if tested is None:
        parts.append(heading + " Its test figures are missing (no `test/per_class.csv`).")
    else:
        parts += [
            heading + " Its test figures, once:",
            TRAINING_SHARE_NOTE,
            overview_table([tested]),
            per_class_table(tested),
        ]
    return "\n\n".join(parts) + "\n"


def write_search_report(sweep_dir: Path, search: Search) -> Path:
    """Write a search's `results.md`, and its best trial's figures as `results.csv`."""
    trials = read_trials(sweep_dir, search)
    best = best_trial(trials, search)
    tested = tested_configuration(sweep_dir, best) if best is not None else None
    write_rows_csv(
        sweep_dir / RESULTS_CSV, RESULTS_COLUMNS, results_rows([tested] if tested else [])
    )
    path = sweep_dir / RESULTS_FILE
    path.write_text(search_markdown(sweep_dir, search, trials, best, tested))
    log.info("Search report: %s", path)
    return path
