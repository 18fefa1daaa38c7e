"""The review queue: the filled cells to look at first, and the decisions a reviewer made."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from significance.errors import ConfigurationError, InputError
from significance.files import atomic_write

if TYPE_CHECKING:
    from significance.catalogue.annotate import Prediction

DECISIONS = ("accept", "correct", "reject")
# A prediction's columns in predictions.csv, review.csv and disagreements.csv.
PREDICTION_COLUMNS = [
    "line",
    "path",
    "field",
    "task",
    "artwork_type",
    "predicted",
    "probability",
    "margin",
    "model",
    "classes",
]
REVIEW_COLUMNS = [*PREDICTION_COLUMNS, "decision", "corrected_label"]
DISAGREEMENT_COLUMNS = ["line", "path", "field", "catalogue", *PREDICTION_COLUMNS[3:]]


@dataclass(frozen=True)
class Decision:
    """A reviewed (or merged unreviewed) prediction: what to write into which cell."""

    line: int
    path: str
    field: str
    decision: str  # accept, correct, reject, or "" (not reviewed)
    label: str  # the value to write: the prediction, or the correction
    probability: float
    model: str
    artwork_type: str


def review_queue(
    predictions: Sequence[Prediction], size: int | None, below: float | None
) -> list[Prediction]:
    """Most uncertain first (lowest probability, then smallest margin); `below` keeps those
    under a probability, `size` the first so many."""
    if size is not None and size < 0:
        raise ConfigurationError(f"review.size must be 0 or more, got {size}")
    ordered = sorted(predictions, key=lambda p: (p.probability, p.margin, p.line, p.field))
    if below is not None:
        ordered = [p for p in ordered if p.probability < below]
    return ordered if size is None else ordered[:size]


def prediction_row(prediction: Prediction) -> dict[str, str]:
    """A prediction as a CSV row (probabilities to 4 places, classes joined by `|`)."""
    values = asdict(prediction)
    values["probability"] = f"{prediction.probability:.4f}"
    values["margin"] = f"{prediction.margin:.4f}"
    values["classes"] = "|".join(prediction.classes)
    return {key: str(value) for key, value in values.items()}


def write_predictions(path: Path, predictions: Sequence[Prediction], columns: list[str]) -> None:
    """Write predictions as a CSV of `columns` (review columns start empty)."""
    with atomic_write(path, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(dict.fromkeys(columns, "") | prediction_row(p) for p in predictions)


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV written by `write_predictions` (or the review page)."""
    if not path.is_file():
        raise InputError(f"{path} not found")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


def read_review(path: Path) -> list[Decision]:
    """The decided rows of a review.csv; an unknown decision or a bad correction is refused."""
    decisions = []
    for number, row in enumerate(read_rows(path), start=2):
        decision = (row.get("decision") or "").strip().lower()
        if not decision:
            continue
        if decision not in DECISIONS:
            raise InputError(
                f"{path} line {number}: decision {decision!r} is not one of {DECISIONS}"
            )
        corrected = (row.get("corrected_label") or "").strip()
        decisions.append(decided(row, decision, corrected, f"{path} line {number}"))
    return decisions


def decided(row: dict[str, str], decision: str, corrected: str, where: str) -> Decision:
    """A decision on a predictions row; a correction must be one of the model's classes."""
    classes = [c for c in (row.get("classes") or "").split("|") if c]
    if decision == "correct" and (not corrected or (classes and corrected not in classes)):
        raise InputError(f"{where}: corrected_label {corrected!r} is not one of {classes}")
    return Decision(
        line=int(row["line"]),
        path=row["path"],
        field=row["field"],
        decision=decision,
        label=corrected if decision == "correct" else row["predicted"],
        probability=float(row["probability"]),
        model=row["model"],
        artwork_type=row["artwork_type"],
    )
