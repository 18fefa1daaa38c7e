"""Figures written as PNG files: confusion matrices and training curves.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot state, no display needed),
so they work the same on a headless server, in a DDP job and in tests.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torchmetrics.utilities.plot import plot_confusion_matrix

# The metrics of the CSV log that `curves.png` shows: one panel each, train and validation.
CURVES = ("loss", "acc")


def save_figure(figure: Figure, path: Path) -> None:
    """Render `figure` with Agg into `path`."""
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=100)


def write_confusion_matrix_png(
    confusion: torch.Tensor, classes: Sequence[str], path: Path, title: str = ""
) -> None:
    """Two panels: counts, and rows normalised to 1 (each true class's recall on the diagonal)."""
    counts = confusion.to(torch.float64)
    rows = counts.sum(dim=1, keepdim=True).clamp(min=1)
    size = 3.0 + 0.6 * len(classes)
    figure = Figure(figsize=(2 * size + 1, size + 0.5), layout="constrained")
    count_axes, normalised_axes = figure.subplots(1, 2)
    plot_confusion_matrix(confusion.to(torch.int64), ax=count_axes, labels=list(classes))
    plot_confusion_matrix(counts / rows, ax=normalised_axes, labels=list(classes))
    count_axes.set_title("counts")
    normalised_axes.set_title("normalised per true class")
    if title:
        figure.suptitle(title)
    save_figure(figure, path)


def read_epoch_curves(metrics_csv: Path) -> dict[str, dict[int, float]]:
    """`{"train/loss": {epoch: value}, ...}` from Lightning's CSV log (one row per log call)."""
    curves: dict[str, dict[int, float]] = defaultdict(dict)
    with metrics_csv.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if not row.get("epoch"):
                continue
            for stage in ("train", "val"):
                for name in CURVES:
                    value = row.get(f"{stage}/{name}")
                    if value:
                        curves[f"{stage}/{name}"][int(float(row["epoch"]))] = float(value)
    return dict(curves)


def write_curves_png(metrics_csv: Path, path: Path, title: str = "") -> None:
    """Loss and accuracy per epoch, train and validation, from the run's CSV log."""
    curves = read_epoch_curves(metrics_csv)
    figure = Figure(figsize=(10, 4), layout="constrained")
    for axes, name in zip(figure.subplots(1, len(CURVES)), CURVES, strict=True):
        for stage, label in (("train", "train"), ("val", "validation")):
            points = sorted(curves.get(f"{stage}/{name}", {}).items())
            if points:
                epochs, values = zip(*points, strict=True)
                axes.plot([e + 1 for e in epochs], values, marker="o", label=label)
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_ylabel("accuracy" if name == "acc" else name)
        axes.grid(alpha=0.3)
        axes.legend()
    if title:
        figure.suptitle(title)
    save_figure(figure, path)
