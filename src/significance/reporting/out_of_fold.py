"""A cross-validation sweep's `oof_predictions.csv`: every labelled image once per task and seed,
with the class probabilities of the fold model that never saw it.

Each fold job's `test/predictions.csv` holds exactly its held-out fold, so the file is those
files stacked. One wide table serves every task of the sweep: a `p_<class>` column for every
class of any task (in the order first met), blank in the rows of a task without that class;
a task's classes are thus the `p_` columns filled in its rows, in column order.
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from significance.files import atomic_write
from significance.reporting.tables import read_rows_csv
from significance.run_files import OOF_PREDICTIONS_FILE, PREDICTIONS_FILE

if TYPE_CHECKING:
    from pathlib import Path

    from significance.reporting.sweep import Configuration

log = logging.getLogger(__name__)

OOF_COLUMNS = ("task", "configuration", "seed", "fold", "path", "label")
PROBABILITY_PREFIX = "p_"


def out_of_fold_rows(configurations: Sequence[Configuration]) -> list[dict[str, str]]:
    """The rows of every finished fold job's test predictions, labelled with its task,
    configuration (the overrides that tell it apart; empty if one), seed and fold."""
    rows = []
    for configuration in configurations:
        jobs = zip(configuration.seeds, configuration.folds, configuration.job_dirs, strict=True)
        for seed, fold, job_dir in jobs:
            if fold == "":
                continue
            for prediction in read_rows_csv(job_dir / "test" / PREDICTIONS_FILE):
                probabilities = {
                    key: value
                    for key, value in prediction.items()
                    if key.startswith(PROBABILITY_PREFIX)
                }
                rows.append(
                    {
                        "task": configuration.task,
                        "configuration": configuration.overrides,
                        "seed": seed,
                        "fold": fold,
                        "path": prediction["path"],
                        "label": prediction["true_class"],  # the catalogue's label
                        **probabilities,
                    }
                )
    return rows


def check_coverage(rows: Sequence[dict[str, str]]) -> None:
    """Warn of images twice in one task and seed, or of folds missing (failed jobs)."""
    keys = Counter((r["task"], r["configuration"], r["seed"], r["path"]) for r in rows)
    twice = [key for key, count in keys.items() if count > 1]
    if twice:
        log.warning(
            "%s: %d images appear in two folds, e.g. %s", OOF_PREDICTIONS_FILE, len(twice), twice[0]
        )
    folds: dict[tuple[str, str, str], set[int]] = {}
    for row in rows:
        folds.setdefault((row["task"], row["configuration"], row["seed"]), set()).add(
            int(row["fold"])
        )
    for (task, _, seed), present in folds.items():
        missing = sorted(set(range(max(present) + 1)) - present)
        if missing:
            log.warning(
                "%s: %s seed %s lacks folds %s (jobs that did not finish): their images are "
                "missing",
                OOF_PREDICTIONS_FILE,
                task,
                seed,
                missing,
            )


def write_out_of_fold(sweep_dir: Path, configurations: Sequence[Configuration]) -> Path | None:
    """Write `oof_predictions.csv` into `sweep_dir` when it has fold jobs; return its path."""
    rows = out_of_fold_rows(configurations)
    if not rows:
        return None
    check_coverage(rows)
    classes = list(dict.fromkeys(key for row in rows for key in row if key not in OOF_COLUMNS))
    path = sweep_dir / OOF_PREDICTIONS_FILE
    with atomic_write(path, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*OOF_COLUMNS, *classes], restval="")
        writer.writeheader()
        writer.writerows(rows)
    log.info("Out-of-fold predictions of %d images: %s", len(rows), path)
    return path
