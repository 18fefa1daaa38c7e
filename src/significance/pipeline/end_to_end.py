"""End-to-end evaluation of the pipeline on images that none of its models trained on."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from significance.checkpoint_evaluation import images_seen_by
from significance.data.run_split import CollectionSettings, make_split
from significance.errors import ConfigurationError
from significance.files import write_json
from significance.models.ensemble import FoldEnsemble
from significance.pipeline.loading import Pipeline, PipelineSpec, load_pipeline
from significance.pipeline.precision import check_target_precision, target_precision_figures
from significance.pipeline.report import format_report, write_reliability_diagrams
from significance.pipeline.scoring import Scores, score_images
from significance.run_files import SPLIT_FILE

log = logging.getLogger(__name__)


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
    scores = score_images(pipeline, collection.root, labels, batch_size, num_workers)
    metrics = {  # the collection, the images left out, then the scores
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
    write_outputs(pipeline, scores, metrics, output_dir)
    return metrics


def write_outputs(
    pipeline: Pipeline, scores: Scores, metrics: dict[str, Any], output_dir: Path
) -> None:
    """Reliability diagrams, `pipeline_metrics.json` and `pipeline_report.md` (also printed)."""
    stacked = {task_id: scores.stacked(task_id) for task_id in scores.outputs}
    write_reliability_diagrams(pipeline, stacked, output_dir)
    write_json(output_dir / "pipeline_metrics.json", metrics)
    report = format_report(metrics)
    (output_dir / "pipeline_report.md").write_text(report)
    print(report)


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
