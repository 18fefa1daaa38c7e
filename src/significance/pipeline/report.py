"""The pipeline's end-to-end evaluation on paper: `pipeline_report.md`, reliability diagrams."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from significance.pipeline.loading import Pipeline
from significance.reporting.calibration import write_reliability_png
from significance.run_files import RELIABILITY_FILE


def format_report(metrics: dict[str, Any]) -> str:
    """The metrics as a Markdown report."""
    stage1 = metrics["stage1"]
    lines = [
        "# Pipeline evaluation",
        "",
        f"Collection `{metrics['data_root']}`: {metrics['images']} images that no model of the "
        f"pipeline trained on ({metrics['excluded_trained_on']} left out as some model's "
        f"training or validation images, {len(metrics['unreadable'])} unreadable).",
        "",
        f"Stage 1 ({stage1['task']}): accuracy {_ratio(stage1['acc'])} on {stage1['images']} "
        "images.",
        "",
        "Models: " + "; ".join(metrics.get("models", {}).values()) + ".",
        "",
        "| field | images | acc, true type given | acc, end to end | errors end to end "
        "| of which: wrong type | of which: field model | wrong type, field model right |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task_id, values in metrics["fields"].items():
        lines.append(
            f"| {task_id} | {values['images']} | {_ratio(values['acc_true_type'])} "
            f"| {_ratio(values['acc_end_to_end'])} | {values['errors_end_to_end']} "
            f"| {values['errors_wrong_type']} | {values['errors_field_model']} "
            f"| {values['errors_wrong_type_field_model_right']} |"
        )
    lines += [
        "",
        "End to end, an image of the field's type counts as wrong when stage 1 sent it to "
        "another type (its field is then never predicted). *Wrong type, field model right*: "
        "errors that are stage 1's alone.",
    ]
    lines += threshold_lines(metrics["thresholds"])
    lines += calibration_lines(metrics["calibration"])
    if "target_precision" in metrics:
        lines += target_precision_lines(metrics["target_precision"])
    return "\n".join(lines) + "\n"


def threshold_lines(thresholds: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The accuracy and coverage each threshold on the top probability leaves, per model."""
    steps = [row["threshold"] for row in next(iter(thresholds.values()))]
    lines = [
        "",
        "## Thresholds",
        "",
        "Accuracy of the answers a threshold on the top probability leaves (`stage1.threshold`,"
        " `stage2.threshold` of `predict.py`), and in brackets the share of images answered; "
        "the rest are `uncertain`, left to a person. Field models on images of their true type.",
        "",
        "| model | " + " | ".join(f"≥ {t:g}" for t in steps) + " |",
        "|---|" + "---|" * len(steps),
    ]
    for task_id, rows in thresholds.items():
        cells = [
            f"{_ratio(row['acc'])} ({row['coverage']:.0%})" if row["answered"] else "none answered"
            for row in rows
        ]
        lines.append(f"| {task_id} | " + " | ".join(cells) + " |")
    return lines


def calibration_lines(calibration: dict[str, dict[str, Any]]) -> list[str]:
    """Each model's temperature, and its expected calibration error here before and after."""
    lines = [
        "",
        "## Calibration",
        "",
        "Probabilities here and in `predict.py` are softmax(logits / T), T fitted on each "
        "model's validation split when it was trained (`calibration=none`: T = 1). Expected "
        "calibration error (l1, 15 bins) of each model's decisions above, at T = 1 and at its T "
        "(an ensemble: one T per fold model, the mean of their calibrated probabilities);"
        " its reliability diagram in `<task>/reliability.png`.",
        "",
        "| model | temperature | ECE, T = 1 | ECE, calibrated |",
        "|---|---|---|---|",
    ]
    for task_id, values in calibration.items():
        temperature = "; ".join(
            f"{record['temperature']:.4g}" if record["fitted"] else f"1 ({record['reason']})"
            for record in values["models"]
        )
        lines.append(
            f"| {task_id} | {temperature} | {_ratio(values['ece'])} "
            f"| {_ratio(values['ece_calibrated'])} |"
        )
    return lines


def target_precision_lines(figures: dict[str, Any]) -> list[str]:
    """Each model's threshold for the target precision, chosen on validation, and on test."""
    target = figures["target"]
    lines = [
        "",
        f"## Target precision {target:g}",
        "",
        f"Per model, the lowest threshold at which its answers on its own validation split (the "
        f"training run's `split.csv`) are right at least {target:g} of the time, and what it "
        "gives on this evaluation's images: precision (share of answers right) and coverage "
        "(share answered). Chosen on validation, never on these images.",
        "",
        "| model | threshold | validation: precision | coverage | images "
        "| test: precision | coverage | images |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task_id, values in figures["models"].items():
        chosen = values["threshold"]
        cells = [f"{chosen:.4f}" if chosen is not None else values.get("reason", "not reached")]
        for part in ("validation", "test"):
            row = values[part]
            coverage = "n/a" if row["coverage"] is None else f"{row['coverage']:.0%}"
            cells += [_ratio(row["precision"]), coverage, str(row["images"])]
        lines.append(f"| {task_id} | " + " | ".join(cells) + " |")
    return lines


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def write_reliability_diagrams(
    pipeline: Pipeline,
    outputs: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    output_dir: Path,
) -> None:
    """Each model's reliability diagram, `<output_dir>/<task>/reliability.png`, from its
    (calibrated probabilities, those at T = 1, true classes)."""
    for task_id, (calibrated, plain, truths) in outputs.items():
        if not len(truths):
            continue
        temperatures = [member.calibration.temperature for member in pipeline.members(task_id)]
        label = "T = " + ", ".join(f"{t:.3g}" for t in temperatures)
        panels = [(label, calibrated)]
        if any(t != 1 for t in temperatures):
            panels = [("before calibration (T = 1)", plain), (f"calibrated, {label}", calibrated)]
        path = output_dir / pipeline.models()[task_id].task.slug / RELIABILITY_FILE
        write_reliability_png(panels, truths, path, task_id)
