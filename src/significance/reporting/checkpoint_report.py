"""The files of one evaluation: per-class table, confusion matrix, predictions, report.md."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torchmetrics.functional.classification import (
    multiclass_confusion_matrix,
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
)

from significance.data.collection import Sample
from significance.reporting.calibration import calibration_section, write_reliability_png
from significance.reporting.plots import write_confusion_matrix_png
from significance.reporting.tables import format_cell, markdown_table, write_rows_csv
from significance.run_files import (
    CONFUSION_MATRIX_FILE,
    PER_CLASS_FILE,
    PREDICTIONS_FILE,
    RELIABILITY_FILE,
    REPORT_FILE,
)
from significance.tasks import Task

# The study's layout (Table 5): per class precision, recall, F1; overall rows add accuracy.
PER_CLASS_COLUMNS = ("name", "precision", "recall", "f1", "accuracy", "support")
AVERAGES = ("macro", "weighted")
# Misclassified images listed in report.md and shown in wandb, the least likely true class first.
WORST_COUNT = 16


def classification_table(
    probabilities: torch.Tensor, targets: torch.Tensor, classes: Sequence[str]
) -> list[dict[str, Any]]:
    """Rows of the study's table: one per class, then `macro avg` and `weighted avg`.

    torchmetrics computes every figure, with the conventions of the test metrics (a class
    never seen nor predicted is left out of the macro average).
    """
    count = len(classes)
    support = torch.bincount(targets, minlength=count)
    accuracy = (probabilities.argmax(dim=1) == targets).double().mean().item()
    figures = {}
    for average in (None, *AVERAGES):
        figures[average] = {
            name: function(probabilities, targets, count, average=average)
            for name, function in (
                ("precision", multiclass_precision),
                ("recall", multiclass_recall),
                ("f1", multiclass_f1_score),
            )
        }
    rows = [
        {
            "name": name,
            **{key: values[index].item() for key, values in figures[None].items()},
            "accuracy": None,
            "support": int(support[index]),
        }
        for index, name in enumerate(classes)
    ]
    for average in AVERAGES:
        rows.append(
            {
                "name": f"{average} avg",
                **{key: value.item() for key, value in figures[average].items()},
                "accuracy": accuracy,
                "support": len(targets),
            }
        )
    return rows


def format_text_table(rows: Sequence[dict[str, Any]], title: str = "") -> str:
    """The per-class table as aligned text, for the terminal."""
    width = max(16, *(len(str(row["name"])) + 2 for row in rows))
    lines = [title] if title else []
    lines.append(f"{'':<{width}}" + "".join(f"{c:>10}" for c in PER_CLASS_COLUMNS[1:]))
    for row in rows:
        if row["name"] == f"{AVERAGES[0]} avg":
            lines.append("-" * (width + 10 * (len(PER_CLASS_COLUMNS) - 1)))
        cells = "".join(f"{format_cell(row[c]):>10}" for c in PER_CLASS_COLUMNS[1:])
        lines.append(f"{row['name']:<{width}}{cells}")
    return "\n".join(lines)


def prediction_rows(
    samples: Sequence[Sample],
    probabilities: torch.Tensor,
    targets: torch.Tensor,
    classes: Sequence[str],
) -> list[dict[str, Any]]:
    """One row per test image: path, true and predicted class, the probability of each class.

    The test loader does not shuffle, so sample `i` of the test dataset is prediction `i`;
    the labels are checked against the targets to make sure.
    """
    if len(samples) != len(targets):
        raise ValueError(f"{len(samples)} test samples but {len(targets)} predictions")
    rows = []
    for sample, row, target in zip(samples, probabilities.tolist(), targets.tolist(), strict=True):
        if classes[target] != sample.label:
            raise ValueError(f"prediction order does not match the test samples at {sample.path}")
        predicted = max(range(len(classes)), key=row.__getitem__)
        rows.append(
            {
                "path": sample.path,
                "true_class": sample.label,
                "predicted_class": classes[predicted],
                **{f"p_{name}": p for name, p in zip(classes, row, strict=True)},
            }
        )
    return rows


def worst_mistakes(rows: Sequence[dict[str, Any]], count: int = WORST_COUNT) -> list[dict]:
    """The misclassified rows, lowest probability of the true class first."""
    wrong = [row for row in rows if row["true_class"] != row["predicted_class"]]
    return sorted(wrong, key=lambda row: float(row[f"p_{row['true_class']}"]))[:count]


def git_commit() -> str:
    """The commit of the code that runs (with `+dirty` if changed), or `unknown`."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return commit + ("+dirty" if changes else "")


def write_evaluation_report(
    output_dir: Path,
    task: Task,
    samples: Sequence[Sample],
    probabilities: torch.Tensor,
    targets: torch.Tensor,
    metrics: dict[str, Any],
    uncalibrated: torch.Tensor | None = None,
) -> str:
    """Write per_class.csv, confusion_matrix.png, predictions.csv, reliability.png and report.md;
    return the table.

    `samples` are the evaluated images in the order of `probabilities` (calibrated) and
    `targets`; `uncalibrated` the same at temperature 1 (None: the same), for the diagram;
    `metrics` is what `metrics.json` holds (checkpoint, data root, split file, calibration).
    """
    classes = list(task.classes)
    table = classification_table(probabilities, targets, classes)
    write_rows_csv(output_dir / PER_CLASS_FILE, PER_CLASS_COLUMNS, table)
    confusion = multiclass_confusion_matrix(probabilities, targets, len(classes))
    write_confusion_matrix_png(confusion, classes, output_dir / CONFUSION_MATRIX_FILE, task.id)
    predictions = prediction_rows(samples, probabilities, targets, classes)
    columns = ("path", "true_class", "predicted_class", *(f"p_{name}" for name in classes))
    write_rows_csv(output_dir / PREDICTIONS_FILE, columns, predictions)
    temperature = (metrics.get("calibration") or {}).get("temperature", 1.0)
    panels = [(f"T = {temperature:.3g}", probabilities)]
    if uncalibrated is not None:
        panels = [
            ("before calibration (T = 1)", uncalibrated),
            (f"calibrated, {panels[0][0]}", probabilities),
        ]
    write_reliability_png(panels, targets, output_dir / RELIABILITY_FILE, task.id)
    text_table = format_text_table(table, f"Task {task.id}: {len(targets)} images")
    (output_dir / REPORT_FILE).write_text(
        report_markdown(task, table, confusion, predictions, metrics)
    )
    return text_table


def report_markdown(
    task: Task,
    table: Sequence[dict[str, Any]],
    confusion: torch.Tensor,
    predictions: Sequence[dict[str, Any]],
    metrics: dict[str, Any],
) -> str:
    """report.md: the evaluation on one page, to read or to paste."""
    sections = [
        f"# Evaluation of `{task.id}`",
        markdown_table(("", ""), _about_rows(task, predictions, metrics)),
        "## Summary\n\n" + markdown_table(("figure", "value"), _summary_rows(metrics)),
        _per_class_section(table),
        _confusion_section(list(task.classes), confusion),
        calibration_section(metrics),
        _mistakes_section(predictions),
    ]
    return "\n\n".join(sections) + "\n"


def _about_rows(
    task: Task, predictions: Sequence[dict[str, Any]], metrics: dict[str, Any]
) -> list[tuple[str, str]]:
    """What was evaluated, on which data, with which code, when."""
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return [
        ("task", f"`{task.id}` (stage {task.stage}, classes: {', '.join(task.classes)})"),
        ("checkpoint", f"`{metrics.get('checkpoint', '')}`"),
        ("data", f"`{metrics.get('data_root', '')}`, split `{metrics.get('split_file', '')}`"),
        ("images evaluated", str(len(predictions))),
        ("commit", f"`{git_commit()}`"),
        ("evaluated", when),
    ]


def _summary_rows(metrics: dict[str, Any]) -> list[tuple[str, Any]]:
    """The overall figures of the test."""
    return [
        ("accuracy", metrics["test/acc"]),
        ("macro accuracy (mean recall)", metrics["test/acc_macro"]),
        ("macro F1", metrics["test/f1_macro"]),
        ("loss", metrics["test/loss"]),
    ]


def _per_class_section(table: Sequence[dict[str, Any]]) -> str:
    """The per-class table in the study's layout."""
    rows = [[row[c] for c in PER_CLASS_COLUMNS] for row in table]
    header = ("class", "precision", "recall", "F1", "accuracy", "support")
    return (
        "## Per class (the study's layout)\n\n"
        + markdown_table(header, rows)
        + f"\n\nAlso in [{PER_CLASS_FILE}]({PER_CLASS_FILE})."
    )


def _confusion_section(classes: list[str], confusion: torch.Tensor) -> str:
    """The confusion matrix as a table, and its picture."""
    rows = [[name, *row] for name, row in zip(classes, confusion.tolist(), strict=True)]
    return (
        "## Confusion matrix (rows: true class, columns: predicted)\n\n"
        + markdown_table(("true \\ predicted", *classes), rows)
        + f"\n\n![confusion matrix]({CONFUSION_MATRIX_FILE})"
    )


def _mistakes_section(predictions: Sequence[dict[str, Any]]) -> str:
    """How many images were misclassified, and the worst of them."""
    wrong = worst_mistakes(predictions)
    misclassified = sum(row["true_class"] != row["predicted_class"] for row in predictions)
    heading = f"## Misclassified: {misclassified} of {len(predictions)}\n\n"
    if not wrong:
        return heading + "None."
    rows = [
        [
            f"`{row['path']}`",
            row["true_class"],
            row["predicted_class"],
            float(row[f"p_{row['true_class']}"]),
            float(row[f"p_{row['predicted_class']}"]),
        ]
        for row in wrong
    ]
    return (
        heading + f"The {len(wrong)} with the lowest probability of their true class "
        f"(all predictions in [{PREDICTIONS_FILE}]({PREDICTIONS_FILE})):\n\n"
        + markdown_table(("path", "true", "predicted", "p(true)", "p(predicted)"), rows)
    )
