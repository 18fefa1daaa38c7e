"""A training job's own reports: `curves.png` from the CSV log, and its wandb run's panels.

Called once, on rank 0, after the single-device test (`significance.training.train`): the figures
are final and no other rank is logging.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger, WandbLogger
from PIL import ImageOps

from significance.data.images import load_image
from significance.errors import UnreadableImageError
from significance.reporting.checkpoint_report import worst_mistakes
from significance.reporting.plots import write_curves_png
from significance.reporting.tables import read_rows_csv
from significance.run_files import (
    CONFUSION_MATRIX_FILE,
    METRICS_LOG,
    PER_CLASS_FILE,
    PREDICTIONS_FILE,
    RELIABILITY_FILE,
)

log = logging.getLogger(__name__)

CURVES_FILE = "curves.png"
THUMBNAIL_SIZE = 256  # a misclassified image in wandb: fitted into a square of this side


def report_training_run(loggers: Sequence[Logger], output_dir: Path, test_dir: Path) -> None:
    """Write `curves.png` into `output_dir`; put the test report of `test_dir` into wandb."""
    for logger in loggers:
        logger.save()
    if (output_dir / METRICS_LOG).is_file():
        write_curves_png(output_dir / METRICS_LOG, output_dir / CURVES_FILE, output_dir.name)
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            log_evaluation_to_wandb(logger.experiment, test_dir)


def log_evaluation_to_wandb(run: Any, test_dir: Path) -> None:
    """Log the per-class table, the confusion matrix, the reliability diagram and the worst
    mistakes of an evaluation, and its temperature into the run's summary."""
    import wandb

    per_class = read_rows_csv(test_dir / PER_CLASS_FILE)
    columns = list(per_class[0])
    table = wandb.Table(
        columns=columns,
        data=[[_cell(column, row[column]) for column in columns] for row in per_class],
    )
    metrics = json.loads((test_dir / "metrics.json").read_text())
    predictions = read_rows_csv(test_dir / PREDICTIONS_FILE)
    classes = [key.removeprefix("p_") for key in predictions[0] if key.startswith("p_")]
    panels = {
        "test/per_class": table,
        "test/confusion_matrix": wandb.Image(str(test_dir / CONFUSION_MATRIX_FILE)),
        "test/confusion_matrix_chart": wandb.plot.confusion_matrix(
            y_true=[classes.index(row["true_class"]) for row in predictions],
            preds=[classes.index(row["predicted_class"]) for row in predictions],
            class_names=classes,
        ),
    }
    if (test_dir / RELIABILITY_FILE).is_file():
        panels["test/reliability"] = wandb.Image(str(test_dir / RELIABILITY_FILE))
    calibration = metrics.get("calibration") or {}
    run.summary.update(
        {
            "calibration/temperature": calibration.get("temperature", 1.0),
            "calibration/fitted": bool(calibration.get("fitted")),
        }
    )
    mistakes = mistake_images(worst_mistakes(predictions), Path(metrics["data_root"]))
    if mistakes:
        panels["test/worst_misclassified"] = mistakes
    run.log(panels)


def mistake_images(mistakes: Sequence[dict[str, str]], root: Path) -> list[Any]:
    """Misclassified images captioned with their true and predicted class, for one panel.

    A list of images rather than a table with an image column: wandb stores a table's images
    in a run artifact staged outside the run folder, these stay in `<run>/wandb/.../media/`.
    """
    import wandb

    images = []
    for row in mistakes:
        true, predicted = row["true_class"], row["predicted_class"]
        try:
            image = load_image(root / row["path"])
        except UnreadableImageError as error:  # moved or deleted since the test
            log.warning("Misclassified image not shown in wandb: %s", error)
            continue
        # One size for all: wandb warns about a panel of images of different sizes.
        image = ImageOps.pad(image, (THUMBNAIL_SIZE, THUMBNAIL_SIZE), color=(255, 255, 255))
        caption = (
            f"true {true} ({float(row[f'p_{true}']):.2f}), "
            f"predicted {predicted} ({float(row[f'p_{predicted}']):.2f}): {row['path']}"
        )
        images.append(wandb.Image(image, caption=caption))
    return images


def _cell(column: str, value: str) -> str | int | float | None:
    """A per_class.csv cell for a wandb table: names as text, counts as integers, empty as None."""
    if column == "name":
        return value
    if not value:
        return None
    return int(value) if column == "support" else float(value)
