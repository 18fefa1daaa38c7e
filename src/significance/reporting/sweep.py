"""A sweep's `results.md`: the study's Table 5 from our runs, mean ± std over seeds and folds.

Written by the sweep launcher when a sweep ends, and by `python report.py sweep_dir=...`.
It reads what every job wrote: its row of `summary.csv` and its `test/per_class.csv`. A
hyperparameter search's `results.md` is another (`reporting/search.py`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from significance.errors import InputError
from significance.reporting.configuration import FIGURES, OVERALL_ROW, Configuration, MeanStd
from significance.reporting.out_of_fold import write_out_of_fold
from significance.reporting.study import STUDY_RESULTS, STUDY_SOURCE
from significance.reporting.tables import markdown_table, read_rows_csv, write_rows_csv
from significance.run_files import (
    FINISHED_STATUSES,
    PER_CLASS_FILE,
    RESULTS_FILE,
    SUMMARY_FILE,
)
from significance.search import read_search

log = logging.getLogger(__name__)

RESULTS_CSV = "results.csv"
RESULTS_COLUMNS = ("task", "configuration", "row", "figure", "mean", "std", "n", "seeds", "folds")
# Beside the study's figures: our models see less data than the study's did.
TRAINING_SHARE_NOTE = (
    "With the default fractions these models trained on 72% of each collection (the study: "
    "80%): the validation split that chooses the checkpoint is 10% of the study's training part."
)
FOLDS_NOTE = (
    "A cross-validation fold's model trained on the other K−1 folds less the validation split "
    "carved out of them (10% by default), and was tested on its own fold."
)
TEST_SELECTED_NOTE = (
    "*Test-selected, as the study did*: each job's best test accuracy over its epochs "
    "(report_test_selected), the way the study chose its checkpoints; shown to compare with "
    "its Table 5 like with like and never used to choose anything. *Difference*: how much "
    "choosing on the test set inflates the figure."
)
# Overrides that make a job one seed (or fold) of a configuration rather than one of its own.
NOT_CONFIGURATION = ("task", "seed", "group", "data.fold")


def configuration_overrides(overrides: str) -> set[str]:
    """A job's overrides without those that only pick its task, seed and wandb group."""
    return {
        item
        for item in overrides.split()
        if item.split("=", 1)[0].lstrip("+~") not in NOT_CONFIGURATION
    }


def read_sweep(sweep_dir: Path) -> tuple[list[Configuration], list[dict[str, str]]]:
    """The sweep's finished jobs grouped by configuration, and the rows of its failed jobs.

    A configuration is a task and the overrides that differ between the sweep's jobs (other
    than the seed): `optimizer.lr=1e-4,1e-5` makes two configurations of each task.
    """
    summary = sweep_dir / SUMMARY_FILE
    if not summary.is_file():
        raise InputError(f"{summary} not found: is {sweep_dir} a sweep folder?")
    rows = read_rows_csv(summary)
    overrides = [configuration_overrides(row["overrides"]) for row in rows]
    shared = set.intersection(*overrides) if overrides else set()
    configurations: dict[tuple[str, str], Configuration] = {}
    failed = []
    for row, own in zip(rows, overrides, strict=True):
        # The sweep folder may have moved since: find each job by its folder's name.
        per_class = sweep_dir / Path(row["job_dir"]).name / "test" / PER_CLASS_FILE
        if row["status"] not in FINISHED_STATUSES or not per_class.is_file():
            failed.append(row)
            continue
        key = (row["task"], " ".join(sorted(own - shared)))
        configuration = configurations.setdefault(key, Configuration(*key))
        configuration.seeds.append(row["seed"])
        configuration.folds.append(row.get("fold") or "")  # a sweep of 0.1 has no fold column
        configuration.job_dirs.append(per_class.parent.parent)
        configuration.tables.append(read_rows_csv(per_class))
        if row.get("test_selected_acc"):
            configuration.test_selected.append(float(row["test_selected_acc"]))
    return list(configurations.values()), failed


def results_rows(configurations: Sequence[Configuration]) -> list[dict[str, object]]:
    """Every figure of every configuration over seeds, long format (results.csv)."""
    rows: list[dict[str, object]] = []
    for configuration in configurations:
        for row in configuration.rows:
            for column in (*FIGURES, "support"):
                figure = configuration.figure(row, column)
                if figure is not None:
                    rows.append(
                        {
                            "task": configuration.task,
                            "configuration": configuration.overrides,
                            "row": row,
                            "figure": column,
                            "mean": figure.mean,
                            "std": figure.std,
                            "n": figure.n,
                            "seeds": " ".join(configuration.seeds),
                            "folds": " ".join(configuration.folds).strip(),
                        }
                    )
    return rows


def study_figure(task: str, name: str) -> str:
    """The study's figure for `task`, or a dash where the study has no such task."""
    value = STUDY_RESULTS.get(task, {}).get(name)
    return "—" if value is None else f"{value:.2f}"


def seeds_cell(configuration: Configuration) -> str:
    """The seeds (and folds) a figure is computed over, and how many jobs."""
    count = f"(n={len(configuration.seeds)})"
    if not any(configuration.folds):
        return f"{', '.join(configuration.seeds)} {count}"
    seeds = list(dict.fromkeys(configuration.seeds))
    folds = ", ".join(sorted(set(configuration.folds), key=lambda fold: (len(fold), fold)))
    return f"seed{'s' * (len(seeds) > 1)} {', '.join(seeds)} × folds {folds} {count}"


def overview_table(configurations: Sequence[Configuration]) -> str:
    """The study's Table 5: one row per task, our figures with the study's beside them.

    With report_test_selected, the test-selected accuracy (the study's way) and how much it
    exceeds ours follow our accuracy.
    """
    selected = any(configuration.test_selected for configuration in configurations)
    rows = []
    for configuration in configurations:
        overall = {name: configuration.figure(OVERALL_ROW, name) for name in FIGURES}
        rows.append(
            [
                f"`{configuration.label}`",
                seeds_cell(configuration),
                str(overall["accuracy"]),
                *(test_selected_cells(configuration, overall["accuracy"]) if selected else ()),
                study_figure(configuration.task, "accuracy"),
                str(overall["recall"]),  # balanced accuracy: the mean of the classes' recalls
                str(overall["precision"]),
                str(overall["f1"]),
                study_figure(configuration.task, "f1"),
                support_cell(configuration),
            ]
        )
    header = (
        "task",
        "seeds × folds" if any(any(c.folds) for c in configurations) else "seeds",
        "accuracy (validation-selected)" if selected else "accuracy",
        *(("test-selected, as the study did", "difference") if selected else ()),
        "study accuracy",
        "balanced accuracy (macro recall)",
        "macro precision",
        "macro F1",
        "study F1",
        "test images per class",
    )
    return markdown_table(header, rows)


def test_selected_cells(configuration: Configuration, ours: MeanStd | None) -> list[str]:
    """The test-selected accuracy over seeds and its excess over ours ("—" where missing)."""
    if not configuration.test_selected or ours is None:
        return ["—", "—"]
    selected = MeanStd.of(configuration.test_selected)
    return [str(selected), f"{selected.mean - ours.mean:+.3f}"]


def support_cell(configuration: Configuration) -> str:
    """Each class's test images, the mean over seeds where their splits differ."""
    supports = {row: configuration.figure(row, "support") for row in configuration.classes}
    return ", ".join(
        f"{row} {round(support.mean, 1):g}"
        for row, support in supports.items()
        if support is not None
    )


def per_class_table(configuration: Configuration) -> str:
    """One task's per-class table over seeds, in the study's layout."""
    rows = []
    for row in configuration.rows:
        cells = [configuration.figure(row, column) for column in FIGURES]
        support = configuration.figure(row, "support")
        spread = "" if support is None or not support.std else f" ± {support.std:.1f}"
        rows.append(
            [
                row,
                *("" if cell is None else str(cell) for cell in cells),
                "" if support is None else f"{support.mean:g}{spread}",
            ]
        )
    header = ("class", "precision", "recall", "F1", "accuracy", "support")
    return markdown_table(header, rows)


def results_markdown(
    sweep_dir: Path, configurations: Sequence[Configuration], failed: Sequence[dict[str, str]]
) -> str:
    """The text of results.md."""
    finished = sum(len(c.seeds) for c in configurations)
    parts = [
        f"# Results of sweep `{sweep_dir.name}`",
        f"{finished} of {finished + len(failed)} jobs finished and are included. "
        "Every figure is the mean ± sample standard deviation (n−1) over the seeds (and "
        "cross-validation folds) listed beside it, on each job's test split (a fold's test "
        "split is its held-out fold); a figure from a single job is marked "
        "`(1 seed)`. Accuracy is over all test images; balanced accuracy is the mean of the "
        "classes' recalls (macro recall), so a model that answers the largest class for every "
        "image scores 1/k however large that class is; precision and F1 are macro averages "
        f'(unweighted over classes), the study\'s "overall" row. Study: {STUDY_SOURCE},'
        " transcribed in `significance/reporting/study.py`; the study chose its checkpoints "
        "on the test set, these runs on a validation split.",
        FOLDS_NOTE if any(any(c.folds) for c in configurations) else TRAINING_SHARE_NOTE,
        "## Overview (the study's Table 5)\n\n" + overview_table(configurations),
    ]
    if any(configuration.test_selected for configuration in configurations):
        parts.insert(-1, TEST_SELECTED_NOTE)
    for configuration in configurations:
        parts.append(
            f"## `{configuration.label}`: {'' if any(configuration.folds) else 'seeds '}"
            f"{seeds_cell(configuration)}\n\n" + per_class_table(configuration)
        )
    if failed:
        lines = [
            f"- job {row['job']} `{row['task']}` seed {row['seed']}"
            f"{' fold ' + row['fold'] if row.get('fold') else ''}: {row['status']} "
            f"({row.get('reason') or 'exit code ' + (row['exit_code'] or 'none')}), "
            f"`{Path(row['job_dir']).name}`"
            for row in failed
        ]
        parts.append("## Not included\n\n" + "\n".join(lines))
    return "\n\n".join(parts) + "\n"


def write_sweep_report(sweep_dir: str | Path) -> Path:
    """Write `results.md`, `results.csv` and (with folds) `oof_predictions.csv` into `sweep_dir`."""
    sweep_dir = Path(sweep_dir)
    search = read_search(sweep_dir)
    if search is not None:  # imported here: search.py builds on this module's tables
        from significance.reporting.search import write_search_report

        return write_search_report(sweep_dir, search)
    configurations, failed = read_sweep(sweep_dir)
    write_out_of_fold(sweep_dir, configurations)
    write_rows_csv(sweep_dir / RESULTS_CSV, RESULTS_COLUMNS, results_rows(configurations))
    path = sweep_dir / RESULTS_FILE
    path.write_text(results_markdown(sweep_dir, configurations, failed))
    log.info("Sweep report: %s", path)
    return path
