"""End-to-end evaluation of the pipeline on images that none of its models trained on."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from significance.checkpoint_evaluation import images_seen_by
from significance.data.run_split import CollectionSettings, make_split
from significance.errors import ConfigurationError, InputError
from significance.files import write_json
from significance.models.calibration import expected_calibration_error
from significance.models.ensemble import FoldEnsemble
from significance.pipeline.inference import (
    Decoded,
    decode_size,
    decoded_batches,
    probability_pair,
    stage2_probability_pairs,
)
from significance.pipeline.loading import Pipeline, PipelineSpec, load_pipeline
from significance.pipeline.precision import check_target_precision, target_precision_figures
from significance.pipeline.report import format_report, write_reliability_diagrams
from significance.run_files import SPLIT_FILE

log = logging.getLogger(__name__)

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


def evaluate_pipeline(
    spec: PipelineSpec | Pipeline,
    output_dir: str | Path,
    data: dict[str, Any] | None = None,
    batch_size: int = 64,
    num_workers: int | str = "auto",
    accelerator: str = "auto",
    facts_file: str | Path | None = None,
    exclude_seen: bool = True,
    calibrated: bool = True,
    target_precision: float | None = None,
) -> dict[str, Any]:
    """Stage-1 accuracy, per-field accuracy with the true type and end to end, error sources,
    each model's calibration and thresholds.

    The images are every image of the collection with an artwork type, less those any model
    of the pipeline trained or validated on, matched by content wherever the collection lies
    (`exclude_seen`); `facts_file` holds the facts of scanned files. Probabilities are
    calibrated unless not `calibrated`. With `target_precision`, each model's threshold that
    reaches it is chosen on its own validation split and reported on these images. Writes
    `pipeline_metrics.json` and `pipeline_report.md` into `output_dir`, and the images each
    model was scored on into `<output_dir>/<task>/split.csv` (and `skipped.csv`).
    """
    check_target_precision(target_precision)  # before any model or image is read
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    pipeline = spec if isinstance(spec, Pipeline) else load_pipeline(spec, accelerator, calibrated)
    collection = collection_of(pipeline, data, facts_file)
    seen = seen_by_pipeline(pipeline) if exclude_seen else set()
    labels, excluded = collection_labels(pipeline, collection, output_dir, seen)
    if not labels:
        raise InputError(
            f"every labelled image of {collection.root} trained some model of the pipeline (fold "
            "models of a cross-validation saw them all between them): set data.root=<another>"
        )
    paths = sorted(labels)
    scores = Scores(pipeline)
    batches = decoded_batches(
        [collection.root / p for p in paths], decode_size(pipeline), batch_size, num_workers
    )
    for batch in tqdm(batches, desc="evaluate pipeline", unit="batch"):
        scores.add(batch, paths, labels)
    metrics = {
        "data_root": str(collection.root),
        "images": scores.images,
        "excluded_trained_on": excluded,
        "unreadable": scores.unreadable,
        "checkpoints": pipeline.checkpoints,
        "models": pipeline.describe(),
        **scores.metrics(),
    }
    if target_precision is not None:
        tested = {task_id: scores.decisions(task_id) for task_id in scores.outputs}
        metrics["target_precision"] = target_precision_figures(
            pipeline, tested, target_precision, batch_size, num_workers
        )
    stacked = {task_id: scores.stacked(task_id) for task_id in scores.outputs}
    write_reliability_diagrams(pipeline, stacked, output_dir)
    write_json(output_dir / "pipeline_metrics.json", metrics)
    report = format_report(metrics)
    (output_dir / "pipeline_report.md").write_text(report)
    print(report)
    return metrics


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


def collection_of(
    pipeline: Pipeline, data: dict[str, Any] | None, facts_file: str | Path | None = None
) -> CollectionSettings:
    """`data` where it names a root, else the collection stage 1 was trained on."""
    given = data if (data or {}).get("root") else pipeline.stage1.hparams.get("data") or {}
    collection = CollectionSettings.from_config(given, facts_file)
    if collection.layout != "annotations":
        raise ConfigurationError(
            "the pipeline is evaluated on an annotations table (data.layout="
            "annotations): class folders hold the labels of one task only"
        )
    return collection


def collection_labels(
    pipeline: Pipeline, collection: CollectionSettings, output_dir: Path, seen: set[str]
) -> tuple[dict[str, dict[str, str]], int]:
    """`{path: {task id: label}}` of every image with an artwork type but those `seen`, and how
    many of those were left out.

    Each model's task makes its split of the collection (every image a test image) in
    `<output_dir>/<task>/`; a facts file makes that one scan, not one a model.
    """
    labels: dict[str, dict[str, str]] = {}
    excluded = 0
    for task_id, model in pipeline.models().items():
        split_file = output_dir / model.task.slug / SPLIT_FILE
        split = make_split(split_file, collection, model.task, seen=seen)
        if model.task.stage == 1:
            excluded = split.excluded
        for sample in split.samples:
            if model.task.stage == 1 or sample.path in labels:
                labels.setdefault(sample.path, {})[task_id] = sample.label
    return labels, excluded


def seen_by_pipeline(pipeline: Pipeline) -> set[str]:
    """SHA-256 of every image any model of the pipeline (or of an ensemble) trained or
    validated on: every image of the collection, for the fold models of a cross-validation."""
    seen: set[str] = set()
    for task_id, model in pipeline.models().items():
        paths = pipeline.checkpoints[task_id]
        if isinstance(model, FoldEnsemble):
            for member, path in zip(model.members, paths, strict=True):
                seen |= images_seen_by(path, member)
        else:
            seen |= images_seen_by(paths if isinstance(paths, str) else paths[0], model)
    return seen
