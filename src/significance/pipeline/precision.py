"""`target_precision`: per model, the threshold that reaches a precision on its validation split.

A model answers an image when its top (calibrated) probability is at or above the threshold, as
`predict.py`'s `stage1.threshold` and `stage2.threshold` do; precision is the share of its
answers that are right, coverage the share of images it answers. The threshold is chosen on the
validation split its own training run recorded (never on the images it is then reported on).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from significance.checkpoint_evaluation import recorded_split_file
from significance.data.collection import table_path
from significance.data.split import read_split
from significance.errors import ConfigurationError, InputError
from significance.models.ensemble import FoldEnsemble
from significance.models.module import ArtworkClassifier
from significance.pipeline.inference import decode_size, decoded_batches, probabilities
from significance.pipeline.loading import Pipeline

log = logging.getLogger(__name__)

Decisions = Sequence[tuple[float, bool]]  # (top probability, right?) per image
# Each fold model validated on images that other folds trained on: no split is unseen by all.
ENSEMBLE_REASON = "an ensemble of fold models has no validation split that none of them saw"


def check_target_precision(target: float | None) -> None:
    """Refuse a `target_precision` that is not a share (null is off)."""
    if target is not None and not 0 < target <= 1:
        raise ConfigurationError(f"target_precision must be in (0, 1] or null, got {target}")


def threshold_for_precision(decisions: Decisions, target: float) -> float | None:
    """The lowest threshold whose answers are right at least `target` of the time (the most
    answered of the thresholds that reach it); None when no threshold does."""
    ordered = sorted(decisions, key=lambda decision: decision[0], reverse=True)
    chosen, right = None, 0
    for count, (top, correct) in enumerate(ordered, start=1):
        right += correct
        # A threshold answers every image of its probability: decide after the last of a tie.
        tie_follows = count < len(ordered) and ordered[count][0] == top
        if not tie_follows and right / count >= target:
            chosen = top
    return chosen


def answered_figures(decisions: Decisions, threshold: float | None) -> dict[str, Any]:
    """Images, answers at `threshold`, their coverage and precision (None: no threshold)."""
    if threshold is None:
        return {"images": len(decisions), "answered": None, "coverage": None, "precision": None}
    kept = [right for top, right in decisions if top >= threshold]
    return {
        "images": len(decisions),
        "answered": len(kept),
        "coverage": len(kept) / len(decisions) if decisions else None,
        "precision": sum(kept) / len(kept) if kept else None,
    }


def target_precision_figures(
    pipeline: Pipeline,
    tested: dict[str, Decisions],
    target: float,
    batch_size: int = 64,
    num_workers: int | str = "auto",
) -> dict[str, Any]:
    """Per model: the threshold reaching `target` on its validation split, with its precision
    and coverage there and on `tested` (that model's decisions on the evaluated images). None
    for a fold ensemble (`reason`)."""
    check_target_precision(target)
    models = {}
    for task_id, model in pipeline.models().items():
        if isinstance(model, FoldEnsemble):
            models[task_id] = {
                "threshold": None,
                "reason": ENSEMBLE_REASON,
                "validation": answered_figures([], None),
                "test": answered_figures(tested.get(task_id, []), None),
            }
            continue
        validation = validation_decisions(
            pipeline, pipeline.checkpoints[task_id], model, batch_size, num_workers
        )
        threshold = threshold_for_precision(validation, target)
        models[task_id] = {
            "threshold": threshold,
            "validation": answered_figures(validation, threshold),
            "test": answered_figures(tested.get(task_id, []), threshold),
        }
    return {"target": target, "models": models}


def validation_decisions(
    pipeline: Pipeline,
    ckpt: str | Path,
    model: ArtworkClassifier,
    batch_size: int,
    num_workers: int | str,
) -> list[tuple[float, bool]]:
    """(top probability, right?) of `model` on the validation split its run recorded, decoded
    and fed as the pipeline feeds every image."""
    samples = read_split(recorded_split_file(ckpt, model))["val"]
    root = Path((model.hparams.get("data") or {}).get("root") or ".")
    paths = [root / table_path(sample.path) for sample in samples]
    classes = list(model.task.classes)
    decisions: list[tuple[float, bool]] = []
    for batch in decoded_batches(paths, decode_size(pipeline), batch_size, num_workers):
        items = [item for item in batch if item.pixels is not None]
        if items:
            top, predicted = probabilities(model, torch.stack([i.pixels for i in items])).max(1)
            for item, p, k in zip(items, top.tolist(), predicted.tolist(), strict=True):
                decisions.append((p, classes[k] == samples[item.index].label))
    if samples and not decisions:
        raise InputError(
            f"target_precision: none of the {len(samples)} validation images of {model.task.id} "
            f"can be read under {root}, where its checkpoint says it trained"
        )
    if len(decisions) < len(samples):
        log.warning(
            "%d of %d validation images of %s unreadable under %s: thresholds chosen without them",
            len(samples) - len(decisions),
            len(samples),
            model.task.id,
            root,
        )
    return decisions
