"""Temperature scaling: one temperature fitted on validation logits, and its record in a checkpoint.

A checkpoint keeps its `Calibration` as a plain dict under `"calibration"` (it loads with
`weights_only=True`; training writes it, `significance.training.calibration`); a checkpoint
without one means temperature 1. Probabilities are
`softmax(logits / temperature)`: the ranking of the classes, hence every accuracy, is unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import multiclass_calibration_error

from significance.errors import ConfigurationError

CHECKPOINT_KEY = "calibration"
METHODS = ("temperature", "none")
# Expected calibration error as torchmetrics computes it: l1, 15 equal-width confidence bins.
ECE_BINS = 15
ECE_NORM = "l1"
# Steps of the bisection on log T: 2**-50 of the bounds' width, far below any useful precision.
SEARCH_STEPS = 50


@dataclass(frozen=True)
class CalibrationSettings:
    """The `calibration` config group: the method, the bounds of T, the fewest images to fit on."""

    method: str = "temperature"
    min_temperature: float = 0.05
    max_temperature: float = 20.0
    min_images: int = 30

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> CalibrationSettings:
        """From the `calibration` config (None: the defaults); refuses values that cannot work."""
        known = {f.name for f in fields(cls)}
        settings = cls(**{k: v for k, v in dict(config or {}).items() if k in known})
        problems = settings.problems()
        if problems:
            raise ConfigurationError("; ".join(problems))
        return settings

    def problems(self) -> list[str]:
        """What is wrong with these settings (empty when nothing)."""
        problems = []
        if self.method not in METHODS:
            problems.append(f"calibration.method must be one of {METHODS}, got {self.method!r}")
        if not 0 < self.min_temperature < 1 < self.max_temperature:
            problems.append(
                "calibration needs 0 < min_temperature < 1 < max_temperature, got "
                f"{self.min_temperature} and {self.max_temperature}"
            )
        if self.min_images < 1:
            problems.append(f"calibration.min_images must be >= 1, got {self.min_images}")
        return problems

    @property
    def enabled(self) -> bool:
        """False for `calibration=none`."""
        return self.method != "none"


@dataclass(frozen=True)
class Calibration:
    """A checkpoint's calibration: the temperature its logits are divided by, and how it came."""

    method: str = "none"
    temperature: float = 1.0
    fitted: bool = False
    reason: str | None = None  # why no temperature was fitted
    images: int | None = None  # validation images it was fitted (or refused) on
    nll_before: float | None = None  # validation NLL at T = 1
    nll_after: float | None = None  # validation NLL at the fitted T

    def to_dict(self) -> dict[str, Any]:
        """Plain values, for the checkpoint and metrics.json."""
        return asdict(self)

    @classmethod
    def from_checkpoint(cls, checkpoint: Mapping[str, Any]) -> Calibration:
        """The record a checkpoint's contents hold; temperature 1 for one made before it existed."""
        record = checkpoint.get(CHECKPOINT_KEY)
        if not isinstance(record, Mapping):
            return cls(reason="the checkpoint was made before calibration existed")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in known})

    def turned_off(self) -> Calibration:
        """Temperature 1, for `calibration=none` at evaluation or prediction."""
        fitted = f" (the checkpoint's {self.temperature:.4g} is not used)" if self.fitted else ""
        return Calibration("none", reason=f"turned off (calibration=none){fitted}")

    def describe(self) -> str:
        """One line for a report: the temperature and where it came from, or why it is 1."""
        if self.fitted:
            return (
                f"temperature {self.temperature:.4g}, fitted on {self.images} validation images "
                f"(validation NLL {self.nll_before:.4f} -> {self.nll_after:.4f})"
            )
        return f"none (temperature 1): {self.reason}"


def fit_temperature(
    logits: torch.Tensor, targets: torch.Tensor, settings: CalibrationSettings
) -> Calibration:
    """The temperature minimising the NLL of `logits` (validation), within the bounds.

    Refused (temperature 1, `reason` set) with too few images, every image right
    (the NLL then falls without end as T -> 0), or the best T lying at or beyond a bound.
    """
    logits, targets = logits.detach().double().cpu(), targets.detach().long().cpu()
    count = len(targets)
    refused = Calibration(settings.method, images=count)
    if count < settings.min_images:
        minimum = settings.min_images
        reason = f"too few validation images: {count}, below calibration.min_images={minimum}"
        return replace(refused, reason=reason)
    if bool((logits.argmax(dim=1) == targets).all()):
        reason = (
            f"every one of the {count} validation images is classified right (accuracy 1.0): "
            "the NLL falls without end as the temperature falls, there is none to fit"
        )
        return replace(refused, reason=reason)
    low, high = math.log(settings.min_temperature), math.log(settings.max_temperature)
    below, above = _slope(logits, targets, low) >= 0, _slope(logits, targets, high) <= 0
    if below or above:
        if below:
            reason = (
                f"the NLL still falls at the lowest temperature, {settings.min_temperature:g}: "
                "on validation the model is right more often than even its sharpened "
                "probabilities say"
            )
        else:
            reason = (
                f"the NLL still falls at the highest temperature, {settings.max_temperature:g}: "
                "on validation the probabilities do no better than equal ones"
            )
        return replace(refused, reason=reason)
    for _ in range(SEARCH_STEPS):  # the slope changes sign once: the NLL is convex in 1/T
        middle = (low + high) / 2
        low, high = (middle, high) if _slope(logits, targets, middle) < 0 else (low, middle)
    temperature = math.exp((low + high) / 2)
    return Calibration(
        settings.method,
        temperature,
        True,
        None,
        count,
        negative_log_likelihood(logits, targets, 1.0),
        negative_log_likelihood(logits, targets, temperature),
    )


def _slope(logits: torch.Tensor, targets: torch.Tensor, log_temperature: float) -> float:
    """d NLL / d log T at `log_temperature`."""
    point = torch.tensor(log_temperature, dtype=torch.float64, requires_grad=True)
    F.cross_entropy(logits / point.exp(), targets).backward()
    return float(point.grad)


def negative_log_likelihood(
    logits: torch.Tensor, targets: torch.Tensor, temperature: float
) -> float:
    """The mean NLL of `targets` under `softmax(logits / temperature)`."""
    return float(F.cross_entropy(logits.double() / temperature, targets.long()))


def calibrated_probabilities(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """`softmax(logits / temperature)` over the last dimension (the classes), in float32."""
    return (logits.float() / temperature).softmax(dim=-1)


def expected_calibration_error(probabilities: torch.Tensor, targets: torch.Tensor) -> float:
    """Expected calibration error (l1, 15 bins) of class probabilities (N x classes)."""
    classes = probabilities.shape[1]
    return float(multiclass_calibration_error(probabilities, targets, classes, ECE_BINS, ECE_NORM))


def calibration_errors(
    logits: torch.Tensor, targets: torch.Tensor, temperature: float
) -> tuple[float, float]:
    """Expected calibration error of `logits` at temperature 1, then at `temperature`."""
    return tuple(
        expected_calibration_error(calibrated_probabilities(logits, t), targets)
        for t in (1.0, temperature)
    )
