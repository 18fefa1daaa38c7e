"""How well an evaluation's probabilities are calibrated: the reliability diagram and its section.

The diagram bins the top probability (confidence) of each image in the 15 equal-width bins of the
expected calibration error (`significance.models.calibration`) and sets each bin's accuracy
against its mean confidence: a calibrated model's bars follow the diagonal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from significance.models.calibration import ECE_BINS
from significance.reporting.plots import save_figure
from significance.reporting.tables import markdown_table
from significance.run_files import RELIABILITY_FILE


def reliability_bins(
    probabilities: torch.Tensor, targets: torch.Tensor, bins: int = ECE_BINS
) -> list[dict[str, Any]]:
    """Per confidence bin (lower, upper]: images, mean confidence, accuracy (None when empty)."""
    confidence, predicted = probabilities.max(dim=1)
    right = (predicted == targets).double()
    # torchmetrics' binning: bin i holds the confidences in (i / bins, (i + 1) / bins].
    index = (torch.ceil(confidence.double() * bins) - 1).clamp(0, bins - 1).long()
    rows = []
    for number in range(bins):
        members = index == number
        count = int(members.sum())
        rows.append(
            {
                "lower": number / bins,
                "upper": (number + 1) / bins,
                "images": count,
                "confidence": float(confidence[members].double().mean()) if count else None,
                "accuracy": float(right[members].mean()) if count else None,
            }
        )
    return rows


def write_reliability_png(
    panels: list[tuple[str, torch.Tensor]], targets: torch.Tensor, path: Path, title: str = ""
) -> None:
    """One reliability diagram per `(label, probabilities)` of the same images, side by side."""
    figure = Figure(figsize=(4.5 * len(panels), 4.8), layout="constrained")
    axes_list = figure.subplots(1, len(panels), squeeze=False)[0]
    for axes, (label, probabilities) in zip(axes_list, panels, strict=True):
        rows = [row for row in reliability_bins(probabilities, targets) if row["images"]]
        width = 1 / ECE_BINS
        lefts = [row["lower"] for row in rows]
        axes.bar(lefts, [row["accuracy"] for row in rows], width, align="edge", label="accuracy")
        axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="calibrated")
        axes.plot(
            [row["confidence"] for row in rows],
            [row["accuracy"] for row in rows],
            "o",
            color="black",
            markersize=3,
            label="mean confidence",
        )
        for row in rows:  # how many images each bar stands on
            axes.annotate(str(row["images"]), (row["lower"] + width / 2, 0.02), ha="center")
        axes.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top probability)")
        axes.set(ylabel="accuracy", title=label)
        axes.legend(loc="upper left")
    if title:
        figure.suptitle(title)
    save_figure(figure, path)


def calibration_section(metrics: dict[str, Any]) -> str:
    """report.md's section: the temperature, ECE before and after, the diagram."""
    calibration = metrics.get("calibration") or {}
    if calibration.get("fitted"):
        temperature = (
            f"{calibration['temperature']:.4g}, fitted on {calibration['images']} validation "
            f"images (validation NLL {calibration['nll_before']:.4f} -> "
            f"{calibration['nll_after']:.4f})"
        )
    else:
        temperature = f"1 (none fitted: {calibration.get('reason') or 'unknown'})"
    rows = [
        ("temperature", temperature),
        ("expected calibration error, T = 1", metrics["test/ece"]),
        ("expected calibration error, calibrated", metrics["test/ece_calibrated"]),
        ("loss (NLL), calibrated", metrics["test/loss_calibrated"]),
    ]
    return (
        "## Calibration\n\n"
        + markdown_table(("", ""), rows)
        + "\n\nProbabilities are softmax(logits / temperature); the temperature is fitted on the "
        "validation split when training ends and kept in the checkpoint (`calibration=none` "
        "turns it off). Expected calibration error: l1, 15 confidence bins (torchmetrics). "
        "The probabilities of this report and of `predictions.csv` are the calibrated ones; "
        "accuracy and F1 do not depend on the temperature, the summary's loss is at T = 1.\n\n"
        f"![reliability diagram]({RELIABILITY_FILE})"
    )
