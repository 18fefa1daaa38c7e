"""One configuration of a sweep (a task and its overrides): its finished jobs' per-class
tables, and each figure over them as mean ± sample standard deviation.

Read by the sweep's `results.md` (`sweep.py`), a search's (`search.py`) and the out-of-fold
file (`out_of_fold.py`); no torch here.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

OVERALL_ROW = "macro avg"  # the study's "overall" row: unweighted means over classes
AVERAGE_ROWS = (OVERALL_ROW, "weighted avg")
FIGURES = ("precision", "recall", "f1", "accuracy")


@dataclass(frozen=True)
class MeanStd:
    """One figure over seeds: mean, sample standard deviation (n-1; None for one seed), n."""

    mean: float
    std: float | None
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> MeanStd:
        """Mean and spread of `values`."""
        spread = statistics.stdev(values) if len(values) > 1 else None
        return cls(statistics.mean(values), spread, len(values))

    def __str__(self) -> str:
        if self.std is None:
            return f"{self.mean:.3f} (1 seed)"
        return f"{self.mean:.3f} ± {self.std:.3f}"


@dataclass
class Configuration:
    """The finished jobs of one task and one set of other overrides: one per seed and fold."""

    task: str
    overrides: str
    seeds: list[str] = field(default_factory=list)
    tables: list[list[dict[str, str]]] = field(default_factory=list)
    # report_test_selected: each seed's best test accuracy over epochs, as the study chose.
    test_selected: list[float] = field(default_factory=list)
    folds: list[str] = field(default_factory=list)  # each job's fold ("" without folds)
    job_dirs: list[Path] = field(default_factory=list)

    @property
    def label(self) -> str:
        """The task, and the overrides that tell this configuration apart."""
        return f"{self.task} ({self.overrides})" if self.overrides else self.task

    def figure(self, row: str, column: str) -> MeanStd | None:
        """`column` of the per-class table's `row` over seeds; None where no job has it."""
        values = [
            float(cells[column])
            for table in self.tables
            for cells in table
            if cells["name"] == row and cells.get(column)
        ]
        return MeanStd.of(values) if values else None

    @property
    def rows(self) -> list[str]:
        """The row names of the per-class table, in the first job's order."""
        return [cells["name"] for cells in self.tables[0]]

    @property
    def classes(self) -> list[str]:
        """The rows of the per-class table that are classes (not averages)."""
        return [row for row in self.rows if row not in AVERAGE_ROWS]
