"""What a task is: one classifier, stage 1 (artefact type) or stage 2 (a field of one type).

Tasks are defined only by the YAML files under `conf/task/`; nothing in the code lists them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from significance.errors import TaskDefinitionError

# The column of the annotations table that stage 1 learns.
ARTWORK_TYPE_FIELD = "artwork_type"


@dataclass(frozen=True)
class Task:
    """One classification task, as its task file describes it."""

    id: str
    stage: int
    artwork_type: str | None
    field: str
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.stage not in (1, 2):
            raise TaskDefinitionError(f"task {self.id!r}: stage must be 1 or 2, got {self.stage!r}")
        if self.stage == 2 and not self.artwork_type:
            raise TaskDefinitionError(f"task {self.id!r}: a stage-2 task needs an artwork_type")
        if len(self.classes) < 2:
            raise TaskDefinitionError(
                f"task {self.id!r}: needs at least two classes, got {self.classes}"
            )
        if len(set(self.classes)) != len(self.classes):
            raise TaskDefinitionError(f"task {self.id!r}: class names repeat: {list(self.classes)}")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Task:
        """Build a task from a task file's mapping (a dict or a DictConfig)."""
        return cls(
            id=str(config["id"]),
            stage=int(config["stage"]),
            artwork_type=config.get("artwork_type"),
            field=str(config["field"]),
            classes=tuple(str(c) for c in config["classes"]),
        )

    @property
    def slug(self) -> str:
        """The task id made safe for folder, file and wandb names (`coins/material` -> ...)."""
        return slugify(self.id)

    def to_dict(self) -> dict[str, Any]:
        """Plain values, as stored in checkpoints."""
        values = asdict(self)
        values["classes"] = list(self.classes)
        return values


def slugify(text: str) -> str:
    """Replace everything but letters, digits, `.`, `_` and `-` by `-`."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-")


def discover_tasks(conf_dir: str | Path) -> dict[str, Task]:
    """Read every task file under `<conf_dir>/task/`, keyed by task id, in id order."""
    task_dir = Path(conf_dir) / "task"
    tasks: dict[str, Task] = {}
    for path in sorted(task_dir.rglob("*.yaml")):
        task = Task.from_config(yaml.safe_load(path.read_text()))
        expected_id = path.relative_to(task_dir).with_suffix("").as_posix()
        if task.id != expected_id:
            raise TaskDefinitionError(
                f"{path}: id {task.id!r} does not match its file ({expected_id!r})"
            )
        tasks[task.id] = task
    return dict(sorted(tasks.items()))
