"""Which checkpoints make a pipeline, loading them once, and refusing one in the wrong slot."""

from __future__ import annotations

import csv
import logging
import statistics
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from significance.errors import PipelineError
from significance.models.ensemble import FoldEnsemble
from significance.models.module import ArtworkClassifier, load_classifier
from significance.reporting.sweep import configuration_overrides
from significance.run_files import FINISHED_STATUSES, SUMMARY_FILE

log = logging.getLogger(__name__)

# A slot of the pipeline: one checkpoint, or several of one task (the fold models of a
# cross-validation) used as one ensemble.
Checkpoints = str | list[str]
Model = ArtworkClassifier | FoldEnsemble


@dataclass(frozen=True)
class PipelineSpec:
    """Checkpoint paths: stage 1's, and stage 2's by artwork type and field."""

    stage1: Checkpoints
    stage2: dict[str, dict[str, Checkpoints]] = field(default_factory=dict)


@dataclass
class Pipeline:
    """The loaded models: one stage-1 classifier and the stage-2 classifiers of each type."""

    stage1: Model
    stage2: dict[str, dict[str, Model]]
    device: torch.device
    checkpoints: dict[str, Checkpoints]

    @property
    def field_tasks(self) -> list[str]:
        """Stage-2 task ids in output order: stage 1's class order, then the fields as given."""
        return [
            f"{artwork_type}/{name}"
            for artwork_type in self.stage1.task.classes
            for name in self.stage2.get(artwork_type, {})
        ]

    def describe(self) -> dict[str, str]:
        """Each task's model in words: one checkpoint, or an ensemble of how many fold models."""
        return {
            task_id: f"{task_id} (ensemble of {len(model)} fold models, their mean probability)"
            if isinstance(model, FoldEnsemble)
            else task_id
            for task_id, model in self.models().items()
        }

    def members(self, task_id: str) -> list[ArtworkClassifier]:
        """The classifiers of a task's slot: an ensemble's members, or the one model."""
        model = self.models()[task_id]
        return list(model.members) if isinstance(model, FoldEnsemble) else [model]

    def models(self) -> dict[str, Model]:
        """Every model by task id, stage 1 first."""
        models = {self.stage1.task.id: self.stage1}
        for fields in self.stage2.values():
            models.update({model.task.id: model for model in fields.values()})
        return models


def spec_from_config(config: Mapping[str, Any]) -> PipelineSpec:
    """The `pipeline` config group: `from_sweep`, then `stage1` and `stage2` on top of it."""
    stage1 = config.get("stage1")
    stage2: dict[str, dict[str, Checkpoints]] = {}
    if config.get("from_sweep"):
        swept = spec_from_sweep(config["from_sweep"], _slot(stage1) if stage1 else None)
        stage1, stage2 = swept.stage1, swept.stage2
    for artwork_type, fields in (config.get("stage2") or {}).items():
        stage2.setdefault(artwork_type, {}).update({k: _slot(v) for k, v in fields.items()})
    if not stage1:
        raise PipelineError(
            "the pipeline names no stage-1 checkpoint: set pipeline.stage1=<ckpt> or "
            "pipeline.from_sweep=<sweep dir with an artefact job>"
        )
    return PipelineSpec(stage1=_slot(stage1), stage2=stage2)


def _slot(value: Any) -> Checkpoints:
    """A slot as configured: one checkpoint path, or a list of them (an ensemble)."""
    return [str(path) for path in value] if isinstance(value, (list, tuple)) else str(value)


def spec_from_sweep(sweep_dir: str | Path, stage1: Checkpoints | None = None) -> PipelineSpec:
    """Each task's checkpoints in a sweep (`task_checkpoints` of its jobs that finished ok).

    `stage1`, when given, stands in for the sweep's stage-1 task: the sweep then needs none.
    """
    summary = Path(sweep_dir) / SUMMARY_FILE
    if not summary.is_file():
        raise PipelineError(f"pipeline.from_sweep: {summary} not found")
    by_task: dict[str, list[dict[str, str]]] = defaultdict(list)
    with summary.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["status"] not in FINISHED_STATUSES or not row["checkpoint"]:
                continue
            # The sweep folder may have moved since: find the checkpoint inside it.
            moved = Path(sweep_dir) / Path(row.get("job_dir") or ".").name / "checkpoints"
            moved = moved / "best.ckpt"
            if not Path(row["checkpoint"]).is_file() and moved.is_file():
                row["checkpoint"] = str(moved)
            by_task[row["task"]].append(row)
    chosen = {task_id: task_checkpoints(rows) for task_id, rows in by_task.items()}
    if stage1 is None:
        stage1 = chosen[_stage1_task(summary, chosen)]
    stage2: dict[str, dict[str, Checkpoints]] = {}
    for task_id, checkpoints in sorted(chosen.items()):
        if "/" in task_id:
            artwork_type, name = task_id.split("/", 1)
            stage2.setdefault(artwork_type, {})[name] = checkpoints
    return PipelineSpec(stage1=stage1, stage2=stage2)


def _stage1_task(summary: Path, chosen: Mapping[str, Checkpoints]) -> str:
    """The sweep's one stage-1 (artwork type) task; refused, saying what to do, if not one."""
    found = [task_id for task_id in chosen if "/" not in task_id]
    if not found:
        raise PipelineError(
            f"{summary}: no stage-1 job (task=artefact) finished in this sweep: add "
            "task=artefact to the sweep, or name a stage-1 checkpoint with pipeline.stage1=<ckpt>"
        )
    if len(found) > 1:
        raise PipelineError(
            f"{summary}: {len(found)} stage-1 tasks finished ({', '.join(found)}): "
            "name the one to use with pipeline.stage1=<ckpt>"
        )
    return found[0]


def task_checkpoints(rows: list[dict[str, str]]) -> Checkpoints:
    """One task's jobs -> its checkpoint: the one of highest `best_val_acc`; with
    cross-validation folds, every fold model (of every seed) of the configuration whose fold
    models reach the highest mean `best_val_acc`, as one ensemble, not the luckiest fold."""
    folded = [row for row in rows if row.get("fold")]
    if not folded:
        best = rows[0]
        for row in rows[1:]:
            if float(row["best_val_acc"] or "nan") > float(best["best_val_acc"] or "nan"):
                best = row
        return best["checkpoint"]
    configurations: dict[frozenset[str], list[dict[str, str]]] = defaultdict(list)
    for row in folded:
        configurations[frozenset(configuration_overrides(row["overrides"]))].append(row)
    jobs = max(
        configurations.values(),
        key=lambda group: statistics.mean(float(r["best_val_acc"] or 0) for r in group),
    )
    return [row["checkpoint"] for row in sorted(jobs, key=lambda r: (r["seed"], int(r["fold"])))]


def load_pipeline(
    spec: PipelineSpec, accelerator: str = "auto", calibrated: bool = True
) -> Pipeline:
    """Load every checkpoint once (weights only) and check each sits in its slot.

    Reads checkpoints only, no image: a misconfigured pipeline stops before any work. Each
    model's probabilities use its checkpoint's temperature unless not `calibrated`.
    """
    stage1 = load_slot(spec.stage1, calibrated)
    if stage1.task.stage != 1:
        raise PipelineError(
            f"stage-1 slot holds {spec.stage1}, a stage-{stage1.task.stage} checkpoint of task "
            f"{stage1.task.id}; stage 1 needs the artwork-type task (e.g. artefact)"
        )
    stage2: dict[str, dict[str, Model]] = {}
    checkpoints = {stage1.task.id: spec.stage1}
    for artwork_type, fields in spec.stage2.items():
        if artwork_type not in stage1.task.classes:
            raise PipelineError(
                f"stage-2 checkpoints are given for artwork type {artwork_type!r}, which stage 1 "
                f"({spec.stage1}) never predicts; its types are {list(stage1.task.classes)}"
            )
        for name, path in fields.items():
            model = load_slot(path, calibrated)
            task = model.task
            if (task.stage, task.artwork_type, task.field) != (2, artwork_type, name):
                raise PipelineError(
                    f"slot {artwork_type}/{name} holds {path}, a checkpoint of task {task.id} "
                    f"(stage {task.stage}, artwork type {task.artwork_type}, field {task.field})"
                )
            stage2.setdefault(artwork_type, {})[name] = model
            checkpoints[task.id] = path
    resolved = resolve_device(accelerator)
    pipeline = Pipeline(stage1, stage2, resolved, checkpoints)
    for model in pipeline.models().values():
        model.to(resolved)
    log.info("Pipeline on %s: %s", resolved, "; ".join(pipeline.describe().values()))
    return pipeline


def load_slot(checkpoints: Checkpoints, calibrated: bool = True) -> Model:
    """One checkpoint's classifier, or the ensemble of a list of checkpoints of one task; each
    at its own checkpoint's temperature unless not `calibrated`."""
    if isinstance(checkpoints, str):
        return load_classifier(checkpoints, calibrated=calibrated)
    models = [load_classifier(path, calibrated=calibrated) for path in checkpoints]
    return models[0] if len(models) == 1 else FoldEnsemble(models, checkpoints)


def resolve_device(accelerator: str) -> torch.device:
    """`auto`: the GPU when there is one; Lightning's accelerator names are accepted too."""
    if accelerator == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device({"gpu": "cuda"}.get(accelerator, accelerator))
