"""Wrong labels in a catalogue: images whose out-of-fold probabilities contradict their label.

A cross-validation sweep predicts every labelled image once with a model that never saw it
(`oof_predictions.csv`). cleanlab's confident learning (`find_label_issues`) estimates from
those probabilities which labels are likely wrong; we rank them, worst first, with the label
the models suggest instead.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from significance.errors import InputError
from significance.run_files import OOF_PREDICTIONS_FILE

PROBABILITY_PREFIX = "p_"


@dataclass(frozen=True)
class LabelIssue:
    """One image whose catalogue label the out-of-fold models doubt."""

    task: str
    path: str
    label: str
    suggested: str
    p_suggested: float
    p_label: float
    rank: int  # 1: the most doubtful of its task


@dataclass(frozen=True)
class TaskPredictions:
    """One task's out-of-fold probabilities: a row per image, a column per class."""

    task: str
    classes: list[str]
    paths: list[str]
    labels: list[str]
    probabilities: np.ndarray


def read_oof_predictions(sweep_dir: str | Path) -> list[TaskPredictions]:
    """Every task's out-of-fold predictions in a cross-validation sweep folder.

    An image predicted more than once (several seeds) gets the mean of its probabilities.
    """
    path = Path(sweep_dir) / OOF_PREDICTIONS_FILE
    if not path.is_file():
        raise InputError(
            f"{path} does not exist: label_issues= takes the folder of a cross-validation "
            "sweep (train.py -m experiment=cv), which writes it"
        )
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    by_task: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        by_task[row["task"]].append(row)
    return [_task_predictions(task, task_rows) for task, task_rows in by_task.items()]


def _task_predictions(task: str, rows: Sequence[Mapping[str, str]]) -> TaskPredictions:
    """One task's rows as a probability matrix (the task's classes are its filled columns)."""
    columns = [c for c in rows[0] if c.startswith(PROBABILITY_PREFIX) and rows[0][c] != ""]
    classes = [column.removeprefix(PROBABILITY_PREFIX) for column in columns]
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = defaultdict(int)
    labels: dict[str, str] = {}
    for row in rows:
        values = np.array([float(row[column]) for column in columns])
        sums[row["path"]] = sums.get(row["path"], 0) + values
        counts[row["path"]] += 1
        labels[row["path"]] = row["label"]
    paths = sorted(sums)
    probabilities = np.stack([sums[p] / counts[p] for p in paths])
    return TaskPredictions(task, classes, paths, [labels[p] for p in paths], probabilities)


def find_label_issues(predictions: Iterable[TaskPredictions]) -> list[LabelIssue]:
    """cleanlab's label issues of every task, each task's ranked by self-confidence."""
    from cleanlab.filter import find_label_issues as cleanlab_issues  # pandas: seconds

    issues = []
    for task in predictions:
        index = {name: i for i, name in enumerate(task.classes)}
        unknown = sorted({label for label in task.labels if label not in index})
        if unknown:
            raise InputError(f"{task.task}: labels {unknown} have no probability column")
        labels = np.array([index[label] for label in task.labels])
        ranked = cleanlab_issues(
            labels, task.probabilities, return_indices_ranked_by="self_confidence"
        )
        for rank, row in enumerate(ranked, start=1):
            suggested = int(task.probabilities[row].argmax())
            issues.append(
                LabelIssue(
                    task=task.task,
                    path=task.paths[row],
                    label=task.labels[row],
                    suggested=task.classes[suggested],
                    p_suggested=float(task.probabilities[row, suggested]),
                    p_label=float(task.probabilities[row, labels[row]]),
                    rank=rank,
                )
            )
    return issues
