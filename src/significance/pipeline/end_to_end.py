"""End-to-end evaluation of the pipeline on images that none of its models trained on."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from significance.checkpoint_evaluation import recorded_split_file, seen_images
from significance.data.collection import index_collection
from significance.errors import CheckpointError, ConfigurationError, InputError
from significance.files import write_json
from significance.pipeline.inference import (
    decode_size,
    decoded_batches,
    probabilities,
    stage2_probabilities,
)
from significance.pipeline.loading import Pipeline, PipelineSpec, load_pipeline

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
    spec: PipelineSpec,
    output_dir: str | Path,
    data: dict[str, Any] | None = None,
    batch_size: int = 64,
    num_workers: int | str = "auto",
    accelerator: str = "auto",
    facts_file: str | Path | None = None,
    exclude_seen: bool = True,
) -> dict[str, Any]:
    """Stage-1 accuracy, per-field accuracy with the true type and end to end, error sources.

    The images are every image of the collection with an artwork type, less those any model
    of the pipeline trained or validated on, matched by content wherever the collection lies
    (`exclude_seen`); `facts_file` holds the facts of scanned files. Writes
    `pipeline_metrics.json` and `pipeline_report.md` into `output_dir`.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    pipeline = load_pipeline(spec, accelerator)
    collection = collection_of(pipeline, data)
    root = Path(collection["root"])
    labels, hashes = collection_labels(pipeline, collection, facts_file)
    seen = seen_by_pipeline(pipeline) if exclude_seen else set()
    excluded = {path for path in labels if hashes[path] in seen}
    paths = sorted(path for path in labels if path not in excluded)
    if not paths:
        raise InputError(f"every labelled image of {root} trained some model of the pipeline")
    stage1_task = pipeline.stage1.task
    stage1_correct, unreadable = 0, []
    counts: dict[str, Counter] = {task_id: Counter() for task_id in pipeline.field_tasks}
    # (top probability, right?) of every decision, for the table of thresholds.
    decisions: dict[str, list[tuple[float, bool]]] = {stage1_task.id: []}
    decisions.update({task_id: [] for task_id in pipeline.field_tasks})
    batches = decoded_batches(
        [root / p for p in paths], decode_size(pipeline), batch_size, num_workers
    )
    for batch in tqdm(batches, desc="evaluate pipeline", unit="batch"):
        unreadable += [paths[item.index] for item in batch if item.pixels is None]
        items = [item for item in batch if item.pixels is not None]
        if not items:
            continue
        pixels = torch.stack([item.pixels for item in items])
        true_labels = [labels[paths[item.index]] for item in items]
        true_types = [label[stage1_task.id] for label in true_labels]
        top, index = probabilities(pipeline.stage1, pixels).max(1)
        routed = [stage1_task.classes[i] for i in index.tolist()]
        right = [r == t for r, t in zip(routed, true_types, strict=True)]
        stage1_correct += sum(right)
        decisions[stage1_task.id] += zip(top.tolist(), right, strict=True)
        # Each field model on the images of its true type: "the model alone".
        given = stage2_probabilities(pipeline, pixels, true_types)
        for task_id, by_position in given.items():
            classes = pipeline.models()[task_id].task.classes
            for position, probs in by_position.items():
                truth = true_labels[position].get(task_id)
                if truth is not None:
                    field_right = classes[int(probs.argmax())] == truth
                    decisions[task_id].append((float(probs.max()), field_right))
                    tally(counts[task_id], field_right, routed[position] == true_types[position])
    evaluated = len(paths) - len(unreadable)
    metrics = {
        "data_root": str(root),
        "images": evaluated,
        "excluded_trained_on": len(excluded & set(labels)),
        "unreadable": unreadable,
        "checkpoints": pipeline.checkpoints,
        "stage1": {
            "task": stage1_task.id,
            "images": evaluated,
            "acc": stage1_correct / evaluated if evaluated else None,
        },
        "fields": {task_id: field_metrics(count) for task_id, count in counts.items()},
        # Each model alone (a field model on images of its true type): what a threshold on
        # its top probability leaves answered, and how often those answers are right.
        "thresholds": {
            task_id: threshold_table(task_decisions)
            for task_id, task_decisions in decisions.items()
        },
    }
    write_json(output_dir / "pipeline_metrics.json", metrics)
    report = format_report(metrics)
    (output_dir / "pipeline_report.md").write_text(report)
    print(report)
    return metrics


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


def collection_of(pipeline: Pipeline, data: dict[str, Any] | None) -> dict[str, Any]:
    """`data` where given, else the collection stage 1 was trained on."""
    given = {key: value for key, value in (data or {}).items() if value is not None}
    trained = dict(pipeline.stage1.hparams.get("data") or {})
    base = {"layout": "annotations", "annotations_file": "annotations.csv"}
    collection = {**base, **given} if given.get("root") else {**base, **trained}
    if collection.get("layout") != "annotations":
        raise ConfigurationError(
            "the pipeline is evaluated on an annotations table (data.layout="
            "annotations): class folders hold the labels of one task only"
        )
    return collection


def collection_labels(
    pipeline: Pipeline, collection: dict[str, Any], facts_file: str | Path | None = None
) -> tuple[dict[str, dict], dict[str, str]]:
    """`{path: {task id: label}}` of every image with an artwork type, from one table, and
    `{path: SHA-256}`.

    Each model's task indexes the collection; `facts_file` makes that one scan, not one a model.
    """
    labels: dict[str, dict[str, str]] = {}
    hashes: dict[str, str] = {}
    for task_id, model in pipeline.models().items():
        samples, _ = index_collection(
            collection["root"],
            "annotations",
            model.task,
            collection["annotations_file"],
            facts_file,
        )
        for sample in samples:
            if model.task.stage == 1 or sample.path in labels:
                labels.setdefault(sample.path, {})[task_id] = sample.label
                hashes[sample.path] = sample.sha256
    return labels, hashes


def seen_by_pipeline(pipeline: Pipeline) -> set[str]:
    """SHA-256 of every image any model of the pipeline trained or validated on."""
    seen: set[str] = set()
    for task_id, model in pipeline.models().items():
        checkpoint = pipeline.checkpoints[task_id]
        try:
            split_file = recorded_split_file(checkpoint, model)
        except CheckpointError as error:
            raise CheckpointError(
                f"{error}. Without it the images {task_id} trained on cannot be left out; "
                "pass exclude_seen=false to score every labelled image anyway"
            ) from None
        seen |= seen_images(split_file, (model.hparams.get("data") or {}).get("root"))
    return seen


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
        "",
        "## Thresholds",
        "",
        "Accuracy of the answers a threshold on the top probability leaves (`stage1.threshold`,"
        " `stage2.threshold` of `predict.py`), and in brackets the share of images answered; "
        "the rest are `uncertain`, left to a person. Field models on images of their true type.",
        "",
        "| model | " + " | ".join(f"≥ {t:g}" for t in THRESHOLDS) + " |",
        "|---|" + "---|" * len(THRESHOLDS),
    ]
    for task_id, rows in metrics["thresholds"].items():
        cells = [
            f"{_ratio(row['acc'])} ({row['coverage']:.0%})" if row["answered"] else "none answered"
            for row in rows
        ]
        lines.append(f"| {task_id} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
