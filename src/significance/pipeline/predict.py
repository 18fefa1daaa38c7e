"""`predict.py`: the pipeline on new images, one output row per input file, in input order."""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from significance.data.collection import table_path
from significance.data.images import IMAGE_SUFFIXES, is_hidden
from significance.errors import InputError
from significance.pipeline.inference import (
    Decoded,
    decode_size,
    decoded_batches,
    probabilities,
    stage2_probabilities,
)
from significance.pipeline.loading import Pipeline, PipelineSpec, load_pipeline

log = logging.getLogger(__name__)

UNCERTAIN = "uncertain"
TYPE_COLUMN = "artwork_type"
PROBABILITY_SUFFIX = "/probability"


def list_inputs(source: str | Path | Sequence[str | Path]) -> list[str]:
    """Image files of `source`: one image, a folder (recursive, sorted), a CSV or a list of paths.

    A CSV is read from its `path` column (or its first column when there is no `path` header);
    relative paths in it are taken from the CSV's folder. Paths come back as written.
    """
    if not isinstance(source, (str, Path)):
        return [str(path) for path in source]
    source = Path(source)
    if source.is_dir():
        files = [
            p
            for p in sorted(source.rglob("*"))
            if p.is_file() and not is_hidden(p.relative_to(source))
        ]
        images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        if len(images) < len(files):
            log.info(
                "Ignoring %d files of %s whose names do not end as images (%s)",
                len(files) - len(images),
                source,
                ", ".join(sorted(IMAGE_SUFFIXES)),
            )
        return [str(p) for p in images]
    if source.suffix.lower() == ".csv":
        with source.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
        column = rows[0].index("path") if rows and "path" in rows[0] else 0
        body = rows[1:] if rows and "path" in rows[0] else rows
        return [str(source.parent / table_path(row[column])) for row in body if row]
    if source.is_file():
        return [str(source)]
    raise InputError(f"input {source} is neither an image, a folder nor a CSV of paths")


def output_columns(pipeline: Pipeline) -> list[str]:
    """path, artwork type, a (label, probability) pair per field of every type, then error."""
    columns = ["path", TYPE_COLUMN, TYPE_COLUMN + PROBABILITY_SUFFIX]
    for task_id in pipeline.field_tasks:
        columns += [task_id, task_id + PROBABILITY_SUFFIX]
    return [*columns, "error"]


def label_of(probs: torch.Tensor, classes: Sequence[str], threshold: float) -> tuple[str, float]:
    """The most probable class, or `uncertain` when its probability is below `threshold`."""
    probability, index = probs.max(dim=0)
    value = float(probability)
    return (classes[int(index)] if value >= threshold else UNCERTAIN), value


def predict(
    source: str | Path | Sequence[str | Path],
    pipeline: PipelineSpec | Pipeline,
    output_dir: str | Path,
    stage1_threshold: float = 0.0,
    stage2_threshold: float = 0.0,
    explain: bool = False,
    batch_size: int = 64,
    num_workers: int | str = "auto",
    accelerator: str = "auto",
    calibrated: bool = True,
) -> list[dict[str, Any]]:
    """Classify every file of `source`; write `predictions.csv` and `.jsonl`; return the rows.

    Probabilities, and the thresholds on them, are calibrated (each checkpoint's temperature)
    unless not `calibrated`, when a spec is loaded here.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(pipeline, PipelineSpec):  # every checkpoint checked before any image
        pipeline = load_pipeline(pipeline, accelerator, calibrated)
    paths = list_inputs(source)
    columns = output_columns(pipeline)
    thresholds = (stage1_threshold, stage2_threshold)
    explain_dir = output_dir / "explanations" if explain else None
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    with tqdm(total=len(paths), desc="predict", unit="img") as progress:
        for batch in decoded_batches(paths, decode_size(pipeline), batch_size, num_workers):
            rows += predict_batch(pipeline, batch, paths, columns, thresholds, explain_dir)
            progress.update(len(batch))
    seconds = time.perf_counter() - started
    readable = sum(row["error"] is None for row in rows)
    write_predictions(output_dir, columns, rows)
    log.info(
        "Predicted %d files (%d unreadable) in %.1f s: %.1f images/s; written to %s",
        len(rows),
        len(rows) - readable,
        seconds,
        readable / max(seconds, 1e-9),
        output_dir / "predictions.csv",
    )
    return rows


def predict_batch(
    pipeline: Pipeline,
    batch: list[Decoded],
    paths: list[str],
    columns: list[str],
    thresholds: tuple[float, float],
    explain_dir: Path | None,
) -> list[dict[str, Any]]:
    """One output row per file of a decoded batch: the readable ones classified (and explained
    into `explain_dir`), the others with their error."""
    rows = [
        dict.fromkeys(columns) | {"path": paths[item.index], "error": item.error} for item in batch
    ]
    images = [(row, item) for row, item in zip(rows, batch, strict=True) if item.pixels is not None]
    if images:
        pixels = torch.stack([item.pixels for _, item in images])
        image_rows = [row for row, _ in images]
        fill_rows(pipeline, pixels, image_rows, *thresholds)
        if explain_dir is not None:
            from significance.pipeline.explain import explain_batch

            names = [f"{item.index:06d}-{Path(paths[item.index]).name}" for _, item in images]
            explain_batch(pipeline, pixels, image_rows, names, explain_dir)
    return rows


def fill_rows(
    pipeline: Pipeline,
    pixels: torch.Tensor,
    rows: list[dict[str, Any]],
    stage1_threshold: float,
    stage2_threshold: float,
) -> None:
    """Put stage 1's label into each row, then the labels of the models it routed the row to."""
    stage1 = probabilities(pipeline.stage1, pixels)
    for row, probs in zip(rows, stage1, strict=True):
        row[TYPE_COLUMN], row[TYPE_COLUMN + PROBABILITY_SUFFIX] = label_of(
            probs, pipeline.stage1.task.classes, stage1_threshold
        )
    routes = [row[TYPE_COLUMN] for row in rows]
    models = pipeline.models()
    for task_id, by_position in stage2_probabilities(pipeline, pixels, routes).items():
        for position, probs in by_position.items():
            rows[position][task_id], rows[position][task_id + PROBABILITY_SUFFIX] = label_of(
                probs, models[task_id].task.classes, stage2_threshold
            )


def write_predictions(output_dir: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    """`predictions.csv` (empty cells for no value) and `predictions.jsonl` (null for none)."""
    with (output_dir / "predictions.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(
            {key: "" if value is None else value for key, value in row.items()} for row in rows
        )
    with (output_dir / "predictions.jsonl").open("w") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)
