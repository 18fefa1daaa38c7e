"""The pipeline over a catalogue's rows: empty cells filled, filled cells checked."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from significance.catalogue.table import Table, row_path
from significance.checkpoint_evaluation import images_seen_by
from significance.data.images import file_sha256
from significance.errors import CheckpointError, CollectionError
from significance.pipeline.inference import Decoded, probabilities, stage2_probabilities
from significance.pipeline.loading import Pipeline
from significance.tasks import ARTWORK_TYPE_FIELD

log = logging.getLogger(__name__)

PREDICTED_SUFFIX = "_predicted"
PROBABILITY_SUFFIX = "_probability"
MODEL_COLUMN = "model"
ERROR_COLUMN = "enrich_error"


@dataclass(frozen=True)
class Prediction:
    """One model's answer for one cell of the table: a filled cell or a contradicted one."""

    line: int  # the table's line number (the header is line 1)
    path: str
    field: str
    task: str
    artwork_type: str  # the type the row was routed by
    predicted: str
    probability: float
    margin: float  # top probability less the second one
    model: str  # `checkpoint_id` of the model
    classes: tuple[str, ...]
    catalogue: str = ""  # the table's own value, for a disagreement


def checkpoint_id(task_id: str, checkpoint: str | Path, commit: str | None) -> str:
    """`<task>:<12 hex of the file's SHA-256>@<commit that trained it, or unknown>`."""
    digest = hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()[:12]
    commit = commit or "unknown"  # checkpoints made before they recorded it
    short = commit.split("+")[0][:12] + ("+dirty" if commit.endswith("+dirty") else "")
    return f"{task_id}:{digest}@{short}"


def pipeline_fields(pipeline: Pipeline) -> list[str]:
    """The table columns the pipeline predicts: the artwork type, then each field once."""
    fields = [ARTWORK_TYPE_FIELD]
    for model in pipeline.models().values():
        if model.task.field not in fields:
            fields.append(model.task.field)
    return fields


def added_columns(fields: list[str]) -> list[str]:
    """The columns an enrichment adds to the table, in order."""
    pairs = [f + suffix for f in fields for suffix in (PREDICTED_SUFFIX, PROBABILITY_SUFFIX)]
    return [*pairs, MODEL_COLUMN, ERROR_COLUMN]


class Annotator:
    """Runs the pipeline batch by batch over a table's rows and remembers what it found."""

    def __init__(self, pipeline: Pipeline, table: Table, root: Path, threshold: float) -> None:
        self.pipeline, self.table, self.root, self.threshold = pipeline, table, root, threshold
        self.fields = pipeline_fields(pipeline)
        if clash := sorted(set(added_columns(self.fields)) & set(table.columns)):
            raise CollectionError(
                f"the table already has the column(s) {clash} an enrichment adds: enrich the "
                "catalogue itself, not an enrichment of it"
            )
        self.ids = {
            task_id: checkpoint_id(task_id, pipeline.checkpoints[task_id], m.hparams.get("commit"))
            for task_id, m in pipeline.models().items()
        }
        self.seen = {task_id: self._seen(task_id) for task_id in self.ids}
        self.filled: list[Prediction] = []
        self.disagreements: list[Prediction] = []
        self.errors: dict[int, str] = {}
        self.stage1: dict[int, tuple[str, float]] = {}  # every readable row's stage-1 answer
        self.images = 0

    def _seen(self, task_id: str) -> set[str] | None:
        """What a model trained or validated on; None when its split cannot be found."""
        model = self.pipeline.models()[task_id]
        try:
            return images_seen_by(self.pipeline.checkpoints[task_id], model)
        except CheckpointError as error:
            log.warning("No disagreements of %s: %s", task_id, str(error).splitlines()[0])
            return None

    def add(self, batch: list[Decoded], indices: list[int]) -> None:
        """Batch item i is the row `indices[i.index]` of the table."""
        for item in batch:
            if item.pixels is None:
                self.errors[indices[item.index]] = item.error or "unreadable"
        readable = [item for item in batch if item.pixels is not None]
        if readable:
            pixels = torch.stack([item.pixels for item in readable])
            self._annotate(pixels, [indices[item.index] for item in readable])

    def _annotate(self, pixels: torch.Tensor, rows: list[int]) -> None:
        """Stage 1 on every row, then the models of each row's type."""
        self.images += len(rows)
        stage1 = self.pipeline.stage1
        routes = []
        for index, probs in zip(rows, probabilities(stage1, pixels), strict=True):
            given = self.table.rows[index].get(ARTWORK_TYPE_FIELD, "").strip()
            answer = stage1.task.classes[int(probs.argmax())]
            self.stage1[index] = (answer, float(probs.max()))
            route = given or answer
            self._consider(index, stage1.task.id, route, probs)
            routes.append(route)
        for task_id, by_position in stage2_probabilities(self.pipeline, pixels, routes).items():
            for position, probs in by_position.items():
                self._consider(rows[position], task_id, routes[position], probs)

    def _consider(self, index: int, task_id: str, route: str, probs: torch.Tensor) -> None:
        """Fill the row's cell of the task's field when empty, else check it."""
        task = self.pipeline.models()[task_id].task
        row = self.table.rows[index]
        top = probs.topk(min(2, len(probs)))
        values = top.values.tolist()
        prediction = Prediction(
            line=index + 2,
            path=row_path(row),
            field=task.field,
            task=task_id,
            artwork_type=route,
            predicted=task.classes[int(top.indices[0])],
            probability=values[0],
            margin=values[0] - (values[1] if len(values) > 1 else 0.0),
            model=self.ids[task_id],
            classes=task.classes,
            catalogue=(row.get(task.field) or "").strip(),
        )
        if not prediction.catalogue:
            self.filled.append(prediction)
        elif self._contradicts(prediction, index):
            self.disagreements.append(prediction)

    def _contradicts(self, prediction: Prediction, index: int) -> bool:
        """A confident other answer on an image the model never trained or validated on."""
        seen = self.seen[prediction.task]
        if prediction.predicted == prediction.catalogue or seen is None:
            return False
        if prediction.probability < self.threshold:
            return False
        return file_sha256(self.root / prediction.path) not in seen

    def enriched(self) -> Table:
        """The table with every column and row as it was, and the added columns filled."""
        table = Table(
            list(self.table.columns), [dict(row) for row in self.table.rows], self.table.line_end
        )
        for column in added_columns(self.fields):
            table.add_column(column)
        for prediction in self.filled:
            row = table.rows[prediction.line - 2]
            row[prediction.field + PREDICTED_SUFFIX] = prediction.predicted
            row[prediction.field + PROBABILITY_SUFFIX] = f"{prediction.probability:.4f}"
            row[MODEL_COLUMN] = " ".join(filter(None, [row[MODEL_COLUMN], prediction.model]))
        for index, error in self.errors.items():
            table.rows[index][ERROR_COLUMN] = error
        return table
