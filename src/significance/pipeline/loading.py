"""Which checkpoints make a pipeline, loading them once, and refusing one in the wrong slot."""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from significance.errors import PipelineError
from significance.models.module import ArtworkClassifier, load_classifier
from significance.run_files import FINISHED_STATUSES, SUMMARY_FILE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineSpec:
    """Checkpoint paths: stage 1's, and stage 2's by artwork type and field."""

    stage1: str
    stage2: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass
class Pipeline:
    """The loaded models: one stage-1 classifier and the stage-2 classifiers of each type."""

    stage1: ArtworkClassifier
    stage2: dict[str, dict[str, ArtworkClassifier]]
    device: torch.device
    checkpoints: dict[str, str]

    @property
    def field_tasks(self) -> list[str]:
        """Stage-2 task ids in output order: stage 1's class order, then the fields as given."""
        return [
            f"{artwork_type}/{name}"
            for artwork_type in self.stage1.task.classes
            for name in self.stage2.get(artwork_type, {})
        ]

    def models(self) -> dict[str, ArtworkClassifier]:
        """Every model by task id, stage 1 first."""
        models = {self.stage1.task.id: self.stage1}
        for fields in self.stage2.values():
            models.update({model.task.id: model for model in fields.values()})
        return models


def spec_from_config(config: Mapping[str, Any]) -> PipelineSpec:
    """The `pipeline` config group: `from_sweep`, then `stage1` and `stage2` on top of it."""
    stage1 = config.get("stage1")
    stage2: dict[str, dict[str, str]] = {}
    if config.get("from_sweep"):
        swept = spec_from_sweep(config["from_sweep"])
        stage1, stage2 = stage1 or swept.stage1, swept.stage2
    for artwork_type, fields in (config.get("stage2") or {}).items():
        stage2.setdefault(artwork_type, {}).update({k: str(v) for k, v in fields.items()})
    if not stage1:
        raise PipelineError(
            "the pipeline names no stage-1 checkpoint: set pipeline.stage1=<ckpt> or "
            "pipeline.from_sweep=<sweep dir with an artefact job>"
        )
    return PipelineSpec(stage1=str(stage1), stage2=stage2)


def spec_from_sweep(sweep_dir: str | Path) -> PipelineSpec:
    """Each task's best checkpoint (highest `best_val_acc` of the ok jobs) of a sweep."""
    summary = Path(sweep_dir) / SUMMARY_FILE
    if not summary.is_file():
        raise PipelineError(f"pipeline.from_sweep: {summary} not found")
    best: dict[str, dict[str, str]] = {}
    with summary.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["status"] not in FINISHED_STATUSES or not row["checkpoint"]:
                continue
            # The sweep folder may have moved since: find the checkpoint inside it.
            moved = Path(sweep_dir) / Path(row.get("job_dir") or ".").name / "checkpoints"
            moved = moved / "best.ckpt"
            if not Path(row["checkpoint"]).is_file() and moved.is_file():
                row["checkpoint"] = str(moved)
            score = float(row["best_val_acc"] or "nan")
            current = best.get(row["task"])
            if current is None or score > float(current["best_val_acc"] or "nan"):
                best[row["task"]] = row
    stage1_rows = [row for row in best.values() if "/" not in row["task"]]
    if len(stage1_rows) != 1:
        raise PipelineError(
            f"{summary}: expected exactly one stage-1 task among the ok jobs, found "
            f"{[row['task'] for row in stage1_rows]}"
        )
    stage2: dict[str, dict[str, str]] = {}
    for task_id, row in sorted(best.items()):
        if "/" in task_id:
            artwork_type, name = task_id.split("/", 1)
            stage2.setdefault(artwork_type, {})[name] = row["checkpoint"]
    return PipelineSpec(stage1=stage1_rows[0]["checkpoint"], stage2=stage2)


def load_pipeline(
    spec: PipelineSpec, accelerator: str = "auto", calibrated: bool = True
) -> Pipeline:
    """Load every checkpoint once (weights only) and check each sits in its slot.

    Reads checkpoints only, no image: a misconfigured pipeline stops before any work. Each
    model's probabilities use its checkpoint's temperature unless not `calibrated`.
    """
    stage1 = load_classifier(spec.stage1, calibrated=calibrated)
    if stage1.task.stage != 1:
        raise PipelineError(
            f"stage-1 slot holds {spec.stage1}, a stage-{stage1.task.stage} checkpoint of task "
            f"{stage1.task.id}; stage 1 needs the artwork-type task (e.g. artefact)"
        )
    stage2: dict[str, dict[str, ArtworkClassifier]] = {}
    checkpoints = {stage1.task.id: str(spec.stage1)}
    for artwork_type, fields in spec.stage2.items():
        if artwork_type not in stage1.task.classes:
            raise PipelineError(
                f"stage-2 checkpoints are given for artwork type {artwork_type!r}, which stage 1 "
                f"({spec.stage1}) never predicts; its types are {list(stage1.task.classes)}"
            )
        for name, path in fields.items():
            model = load_classifier(path, calibrated=calibrated)
            task = model.task
            if (task.stage, task.artwork_type, task.field) != (2, artwork_type, name):
                raise PipelineError(
                    f"slot {artwork_type}/{name} holds {path}, a checkpoint of task {task.id} "
                    f"(stage {task.stage}, artwork type {task.artwork_type}, field {task.field})"
                )
            stage2.setdefault(artwork_type, {})[name] = model
            checkpoints[task.id] = str(path)
    resolved = resolve_device(accelerator)
    pipeline = Pipeline(stage1, stage2, resolved, checkpoints)
    for model in pipeline.models().values():
        model.to(resolved)
    log.info("Pipeline on %s: %s", resolved, ", ".join(pipeline.models()))
    return pipeline


def resolve_device(accelerator: str) -> torch.device:
    """`auto`: the GPU when there is one; Lightning's accelerator names are accepted too."""
    if accelerator == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device({"gpu": "cuda"}.get(accelerator, accelerator))
