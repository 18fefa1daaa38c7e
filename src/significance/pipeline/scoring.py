"""Scoring a pipeline on labelled images: stage 1, each field given the true type and end to
end, where the errors come from, and what each threshold on the top probability leaves."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from significance.errors import InputError
from significance.models.calibration import expected_calibration_error
from significance.pipeline.inference import (
    Decoded,
    decode_size,
    decoded_batches,
    probability_pair,
    stage2_probability_pairs,
)
from significance.pipeline.loading import Pipeline

# Thresholds on a model's top probability that the report tabulates (see `threshold_table`).
THRESHOLDS = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99)
# Per field: the counts written for it, in report order.
FIELD_COUNTS = (
    "images",
    "correct_true_type",  # the field model alone, given the true artwork type
    "correct_end_to_end",  # routed by stage 1, then the field model
    "errors_end_to_end",
    "errors_wrong_type",  # stage 1 sent the image elsewhere: the field was never predicted
    "errors_field_model",  # routed right, the field model was wrong
    "errors_wrong_type_field_model_right",  # of errors_wrong_type: stage 1's fault alone
)


def score_images(
    pipeline: Pipeline,
    root: Path,
    labels: dict[str, dict],
    batch_size: int,
    num_workers: int | str,
) -> Scores:
    """Run the pipeline over the labelled images (`{path: labels}`), batch by batch."""
    if not labels:
        raise InputError(
            f"every labelled image of {root} trained some model of the pipeline (fold "
            "models of a cross-validation saw them all between them): set data.root=<another>"
        )
    paths = sorted(labels)
    scores = Scores(pipeline)
    images = [root / path for path in paths]
    batches = decoded_batches(images, decode_size(pipeline), batch_size, num_workers)
    for batch in tqdm(batches, desc="evaluate pipeline", unit="batch"):
        scores.add(batch, paths, labels)
    return scores


class Scores:
    """What the pipeline got right, batch by batch: stage 1, each field, every decision."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.images = 0
        self.stage1_correct = 0
        self.unreadable: list[str] = []
        self.counts: dict[str, Counter] = {task_id: Counter() for task_id in pipeline.field_tasks}
        # (calibrated probabilities, at T = 1, true class) of every decision of each model: its
        # thresholds and calibration.
        self.outputs: dict[str, list[tuple[torch.Tensor, torch.Tensor, int]]] = {
            task_id: [] for task_id in (pipeline.stage1.task.id, *pipeline.field_tasks)
        }

    def add(self, batch: list[Decoded], paths: list[str], labels: dict[str, dict]) -> None:
        """Score a decoded batch: item i is the file `paths[i.index]`, labelled `labels[path]`."""
        self.unreadable += [paths[item.index] for item in batch if item.pixels is None]
        items = [item for item in batch if item.pixels is not None]
        if items:
            pixels = torch.stack([item.pixels for item in items])
            self._score(pixels, [labels[paths[item.index]] for item in items])

    def _score(self, pixels: torch.Tensor, true_labels: list[dict[str, str]]) -> None:
        """Score images that decoded, each with its labels (`{task id: label}`)."""
        stage1_task = self.pipeline.stage1.task
        true_types = [label[stage1_task.id] for label in true_labels]
        calibrated, plain = probability_pair(self.pipeline.stage1, pixels)
        # The top class is the calibrated one: an ensemble's mean may differ from T = 1's.
        routed = [stage1_task.classes[i] for i in calibrated.argmax(dim=1).tolist()]
        right = [r == t for r, t in zip(routed, true_types, strict=True)]
        self.images += len(right)
        self.stage1_correct += sum(right)
        truths = [stage1_task.classes.index(t) for t in true_types]
        self.outputs[stage1_task.id] += zip(calibrated, plain, truths, strict=True)
        # Each field model on the images of its true type: "the model alone".
        given = stage2_probability_pairs(self.pipeline, pixels, true_types)
        for task_id, by_position in given.items():
            classes = list(self.pipeline.models()[task_id].task.classes)
            for position, (probs, plain_probs) in by_position.items():
                truth = true_labels[position].get(task_id)
                if truth is not None:
                    field_right = classes[int(probs.argmax())] == truth
                    self.outputs[task_id].append((probs, plain_probs, classes.index(truth)))
                    tally(self.counts[task_id], field_right, right[position])

    def stacked(self, task_id: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Calibrated probabilities, those at T = 1 (N x classes) and true classes of one model."""
        if not self.outputs[task_id]:
            classes = len(self.pipeline.models()[task_id].task.classes)
            empty = torch.zeros(0, classes)
            return empty, empty, torch.zeros(0, dtype=torch.long)
        calibrated, plain, truths = zip(*self.outputs[task_id], strict=True)
        return torch.stack(calibrated), torch.stack(plain), torch.tensor(truths)

    def decisions(self, task_id: str) -> list[tuple[float, bool]]:
        """(top calibrated probability, right?) of each decision of one model."""
        calibrated, _, truths = self.stacked(task_id)
        top, predicted = calibrated.max(dim=1)
        return list(zip(top.tolist(), (predicted == truths).tolist(), strict=True))

    def calibration(self, task_id: str) -> dict[str, Any]:
        """One model's temperatures (an ensemble's, one per member) and its expected
        calibration error here, at T = 1 and calibrated."""
        calibrated, plain, truths = self.stacked(task_id)
        before = after = None
        if len(truths):
            before = expected_calibration_error(plain, truths)
            after = expected_calibration_error(calibrated, truths)
        records = [member.calibration.to_dict() for member in self.pipeline.members(task_id)]
        return {"models": records, "ece": before, "ece_calibrated": after}

    def metrics(self) -> dict[str, Any]:
        """Stage 1's accuracy, each field's counts, and the table of thresholds of each model."""
        return {
            "stage1": {
                "task": self.pipeline.stage1.task.id,
                "images": self.images,
                "acc": self.stage1_correct / self.images if self.images else None,
            },
            "fields": {task_id: field_metrics(count) for task_id, count in self.counts.items()},
            # Each model alone (a field model on images of its true type): what a threshold on
            # its top probability leaves answered, and how often those answers are right.
            "thresholds": {task: threshold_table(self.decisions(task)) for task in self.outputs},
            "calibration": {task_id: self.calibration(task_id) for task_id in self.outputs},
        }


def tally(count: Counter, field_right: bool, routed_right: bool) -> None:
    """Count one image of a field into its error sources."""
    count["images"] += 1
    count["correct_true_type"] += field_right
    count["correct_end_to_end"] += field_right and routed_right
    count["errors_end_to_end"] += not (field_right and routed_right)
    count["errors_wrong_type"] += not routed_right
    count["errors_field_model"] += routed_right and not field_right
    count["errors_wrong_type_field_model_right"] += field_right and not routed_right


def threshold_table(decisions: list[tuple[float, bool]]) -> list[dict[str, Any]]:
    """For each of `THRESHOLDS`: the share of decisions at or above it, and their accuracy.

    The same rule as `predict.py`'s `stage1.threshold` and `stage2.threshold`: a top
    probability below the threshold is `uncertain`, left for a person to decide.
    """
    rows = []
    for threshold in THRESHOLDS:
        kept = [right for top, right in decisions if top >= threshold]
        rows.append(
            {
                "threshold": threshold,
                "answered": len(kept),
                "coverage": len(kept) / len(decisions) if decisions else None,
                "acc": sum(kept) / len(kept) if kept else None,
            }
        )
    return rows


def field_metrics(count: Counter) -> dict[str, Any]:
    """The counts of one field and its two accuracies."""
    values: dict[str, Any] = {key: int(count[key]) for key in FIELD_COUNTS}
    images = values["images"]
    values["acc_true_type"] = values["correct_true_type"] / images if images else None
    values["acc_end_to_end"] = values["correct_end_to_end"] / images if images else None
    return values
