"""The run's CSV log (`logs/metrics.csv`): one file per run that a resumed run continues.

Lightning's CSVLogger deletes an existing `metrics.csv` when it starts, so a resumed run would
lose the epochs it had finished. This logger implements Lightning's public `Logger` interface
instead: it rewrites the whole file (atomically) at every save, keeping earlier rows.
"""

from __future__ import annotations

import csv
from argparse import Namespace
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.core.saving import save_hparams_to_yaml
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

from significance.files import atomic_write

HPARAMS_FILE = "hparams.yaml"


class ResumableCSVLogger(Logger):
    """`metrics.csv` and `hparams.yaml` in `log_dir`; rows already in the file are kept."""

    def __init__(self, log_dir: str | Path) -> None:
        super().__init__()
        self._log_dir = Path(log_dir)
        self._pending: list[dict[str, Any]] = []

    @property
    def name(self) -> str:
        return ""

    @property
    def version(self) -> str:
        return self._log_dir.name

    @property
    def save_dir(self) -> str:
        return str(self._log_dir.parent)

    @property
    def log_dir(self) -> str:
        return str(self._log_dir)

    @property
    def metrics_file(self) -> Path:
        """The CSV file of the run's metrics, a row per logging step."""
        return self._log_dir / "metrics.csv"

    @rank_zero_only
    def log_hyperparams(
        self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any
    ) -> None:
        self._log_dir.mkdir(parents=True, exist_ok=True)
        save_hparams_to_yaml(
            self._log_dir / HPARAMS_FILE,
            dict(vars(params) if isinstance(params, Namespace) else params),
        )

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        row = {key: _plain(value) for key, value in metrics.items()}
        row["step"] = step if step is not None else len(self._pending)
        self._pending.append(row)

    @rank_zero_only
    def save(self) -> None:
        if not self._pending:
            return
        fields, rows = read_metrics_log(self.metrics_file)
        rows.extend(self._pending)
        for row in self._pending:
            fields.extend(key for key in row if key not in fields)
        write_metrics_log(self.metrics_file, sorted(fields), rows)
        self._pending = []


def _plain(value: Any) -> Any:
    """A logged value as a number: tensors become Python numbers, the rest stays as it is."""
    return value.item() if isinstance(value, torch.Tensor) else value


def read_metrics_log(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """The header and rows of a metrics CSV; none when there is no such file."""
    if not path.is_file():
        return [], []
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def write_metrics_log(path: Path, fields: list[str], rows: list[dict[str, Any]]) -> None:
    """Write a metrics CSV atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


class ContinueMetricsLog(L.Callback):
    """At the start of training, drop the log rows of epochs this run is about to redo.

    A fresh run starts at epoch 0 and so clears any old log in its folder; a resumed run keeps
    the epochs its checkpoint had finished and drops those it lost in the crash.
    """

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            if isinstance(logger, ResumableCSVLogger):
                trim_metrics_log(logger.metrics_file, trainer.current_epoch)


def trim_metrics_log(path: Path, first_epoch: int) -> None:
    """Keep only the rows of `path` from epochs before `first_epoch`, rewriting it atomically."""
    if path.is_file():
        fields, rows = read_metrics_log(path)
        write_metrics_log(path, fields, [row for row in rows if _epoch(row) < first_epoch])


def _epoch(row: dict[str, str]) -> float:
    """A row's epoch; rows without one (the test figures, logged after training) count last."""
    try:
        return float(row["epoch"])
    except (KeyError, ValueError):
        return float("inf")
