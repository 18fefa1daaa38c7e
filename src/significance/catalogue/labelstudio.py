"""The review queue as Label Studio tasks with pre-annotations, and its JSON export read back."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from significance.catalogue.review import Decision, decided, prediction_row
from significance.catalogue.review_page import thumbnail_name
from significance.errors import InputError
from significance.files import atomic_write
from significance.run_files import LABEL_STUDIO_CONFIG, LABEL_STUDIO_FILE

if TYPE_CHECKING:
    from significance.catalogue.annotate import Prediction

CONTROL = "label"  # the Choices tag of the labeling config
REJECT = "reject"  # the choice that rejects the prediction outright
# Dynamic choices (`value="$options"`): each task brings its own model's classes.
LABELING_CONFIG = """<View>
  <Image name="image" value="$image"/>
  <Header value="$field ($artwork_type): the model says $predicted, p = $probability"/>
  <Choices name="label" toName="image" choice="single" value="$options"/>
</View>
"""


def write_label_studio(output_dir: Path, queue: Sequence[Prediction]) -> None:
    """`review.labelstudio.json` (tasks, the model's answer as a prediction) and its config."""
    tasks = [label_studio_task(p) for p in queue]
    with atomic_write(output_dir / LABEL_STUDIO_FILE) as handle:
        json.dump(tasks, handle, indent=1)
    with atomic_write(output_dir / LABEL_STUDIO_CONFIG) as handle:
        handle.write(LABELING_CONFIG)


def label_studio_task(prediction: Prediction) -> dict[str, Any]:
    """One queued prediction as a Label Studio task with a pre-annotation."""
    data = prediction_row(prediction)
    data["image"] = f"thumbnails/{thumbnail_name(prediction.line)}"
    data["options"] = [{"value": label} for label in (*prediction.classes, REJECT)]
    result = {
        "from_name": CONTROL,
        "to_name": "image",
        "type": "choices",
        "value": {"choices": [prediction.predicted]},
    }
    return {
        "data": data,
        "predictions": [
            {"model_version": prediction.model, "score": prediction.probability, "result": [result]}
        ],
    }


def read_label_studio(path: Path) -> list[Decision]:
    """Decisions from a Label Studio JSON export of these tasks: each task's latest annotation.

    The model's own class is an accept, another class a correction, `reject` a rejection;
    tasks without an annotation (or only cancelled ones) are not reviewed.
    """
    try:
        tasks = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: not a Label Studio JSON export ({error})") from error
    if not isinstance(tasks, list):
        raise InputError(f"{path}: a Label Studio JSON export is a list of tasks")
    decisions = []
    for number, task in enumerate(tasks, start=1):
        choice = latest_choice(task)
        if choice is None:
            continue
        data = task.get("data") or {}
        if "line" not in data:
            raise InputError(f"{path} task {number}: not a task of {LABEL_STUDIO_FILE}")
        decision = "reject" if choice == REJECT else "accept"
        if choice not in (REJECT, data.get("predicted")):
            decision = "correct"
        decisions.append(decided(data, decision, choice, f"{path} task {number}"))
    return decisions


def latest_choice(task: dict[str, Any]) -> str | None:
    """The chosen label of a task's latest annotation that was not cancelled, or None."""
    annotations = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    for annotation in reversed(annotations):
        for result in annotation.get("result") or []:
            choices = (result.get("value") or {}).get("choices") or []
            if result.get("from_name") == CONTROL and choices:
                return str(choices[0])
    return None
