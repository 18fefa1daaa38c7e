"""Calibrating the best checkpoint when training ends: its temperature, fitted on validation.

The checkpoint chosen on validation is scored on the same validation split (one device), its
temperature fitted there (`fit_temperature`) and written into the checkpoint file, which every
later evaluation and prediction reads. The test split is never looked at.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from significance.checkpoint_evaluation import validation_logits
from significance.files import atomic_write
from significance.models.calibration import (
    CHECKPOINT_KEY,
    Calibration,
    CalibrationSettings,
    fit_temperature,
)
from significance.models.module import load_classifier, read_checkpoint

log = logging.getLogger(__name__)


def calibrate_checkpoint(
    ckpt: str | Path,
    settings: CalibrationSettings,
    batch_size: int = 64,
    num_workers: int | str = "auto",
    accelerator: str = "auto",
    cache_dir: str | Path | None = None,
) -> Calibration:
    """Fit the temperature of `ckpt` on its run's validation split and store it in `ckpt`.

    With `calibration=none` the checkpoint records that and keeps temperature 1.
    """
    model = load_classifier(ckpt, calibrated=False)
    if settings.enabled:
        logits, targets = validation_logits(
            ckpt, model, batch_size, num_workers, accelerator, cache_dir
        )
        calibration = fit_temperature(logits, targets, settings)
    else:
        calibration = Calibration("none", reason="turned off at training (calibration=none)")
    store_calibration(ckpt, calibration)
    log.info("Calibration of %s: %s", model.task.id, calibration.describe())
    return calibration


def store_calibration(path: str | Path, calibration: Calibration) -> None:
    """Write `calibration` into the checkpoint file at `path`, atomically, as plain values."""
    checkpoint = read_checkpoint(path)
    checkpoint[CHECKPOINT_KEY] = calibration.to_dict()
    with atomic_write(path, "wb") as handle:
        torch.save(checkpoint, handle)
