"""Imbalanced classes: the training loss's class weights (`loss.class_weights`) and the names of
the training samplers (`data.sampler`).

Loads neither torch nor Lightning: `train.py` checks both settings before they load.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from significance.errors import ConfigurationError, SplitError

BALANCED = "balanced"
# data.sampler: `shuffle`, every training image once an epoch; `balanced`, each class equally
# likely per draw (data/samplers.py).
SAMPLERS = ("shuffle", BALANCED)


def sampler_problems(sampler: Any) -> list[str]:
    """What is wrong with a `data.sampler` value (empty: nothing)."""
    if sampler in SAMPLERS:
        return []
    return [f"data.sampler must be one of {list(SAMPLERS)}, got {sampler!r}"]


def class_weight_problems(setting: Any, classes: Sequence[str]) -> list[str]:
    """What is wrong with a `loss.class_weights` value for a task of `classes` (empty: nothing)."""
    if setting in (None, "none", BALANCED):
        return []
    if not isinstance(setting, Mapping):
        return [f"loss.class_weights must be none, balanced or {{class: weight}}, got {setting!r}"]
    problems = []
    if unknown := sorted(str(name) for name in setting if str(name) not in classes):
        problems.append(
            f"loss.class_weights names {unknown}, which are not classes of the task "
            f"(its classes: {list(classes)})"
        )
    if bad := {str(name): weight for name, weight in setting.items() if not _positive(weight)}:
        problems.append(f"loss.class_weights must be numbers > 0, got {bad}")
    return problems


def imbalance_advice(class_weights_setting: Any, sampler: Any, monitor: Any) -> list[str]:
    """Warnings for settings that undo each other or what they are for (empty: none)."""
    weighted = class_weights_setting not in (None, "none")
    advice = []
    if weighted and sampler == BALANCED:
        advice.append(
            "loss.class_weights with data.sampler=balanced counts the rare classes up twice: "
            "the sampler already draws every class as often; use one of them"
        )
    if (weighted or sampler == BALANCED) and monitor == "val/acc":
        advice.append(
            "the best checkpoint is chosen on val/acc, which prefers the epoch that names the "
            "largest class for everything: add callbacks.best_checkpoint.monitor=val/acc_macro"
        )
    return advice


def class_weights(
    setting: Any, classes: Sequence[str], labels: Sequence[str]
) -> list[float] | None:
    """The training loss's weight per class, in the task's order; None for `none` (all equal).

    `labels` are the training split's. `balanced` gives n / (k * n_c); a mapping gives its
    classes their weight and every other class 1.
    """
    if problems := class_weight_problems(setting, classes):
        raise ConfigurationError("; ".join(problems))
    if setting in (None, "none"):
        return None
    if setting == BALANCED:
        return balanced_weights(classes, labels)
    given = {str(name): float(weight) for name, weight in setting.items()}
    return [given.get(name, 1.0) for name in classes]


def balanced_weights(classes: Sequence[str], labels: Sequence[str]) -> list[float]:
    """n / (k * n_c) over the `labels` (scikit-learn's `balanced` class weights)."""
    import numpy as np
    from sklearn.utils.class_weight import compute_class_weight

    if missing := sorted(set(classes) - set(labels)):
        raise SplitError(
            f"class(es) {missing} have no training image, so balanced class weights are "
            "undefined: give the weights as loss.class_weights={class: weight}"
        )
    weights = compute_class_weight(BALANCED, classes=np.array(classes), y=np.array(labels))
    return [float(weight) for weight in weights]


def _positive(weight: Any) -> bool:
    """A finite number above 0 (a bool is not a weight)."""
    return (
        isinstance(weight, (int, float))
        and not isinstance(weight, bool)
        and math.isfinite(weight)
        and weight > 0
    )
