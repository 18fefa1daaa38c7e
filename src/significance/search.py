"""A hyperparameter search: the figure it optimizes, which way, and the settings it varies.

A sweep is a search when its sweeper has a `direction` (`hydra/sweeper=optuna`, set by
`hparams_search=...`). The sweep launcher hands the sweeper each job's `objective` (a figure of
its `result.json`) and writes this record as `search.json`; the sweep report reads it back to
rank the trials. Light on purpose: no torch, no Lightning.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from significance.errors import ConfigurationError
from significance.files import write_json
from significance.run_files import SEARCH_FILE

DEFAULT_OBJECTIVE = "best_val_acc"
# Figures that are better low; every other figure (accuracy, F1) is better high.
MINIMIZED_WORDS = ("loss", "error", "ece")


@dataclass(frozen=True)
class Search:
    """What a search optimizes (`objective`, `direction`) over which settings (`parameters`)."""

    objective: str
    direction: str  # maximize or minimize
    parameters: tuple[str, ...]

    def best(self, values: dict[int, float]) -> int | None:
        """The job with the best value (the first of equals, as Optuna); None without values."""
        if not values:
            return None
        sign = 1 if self.direction == "maximize" else -1
        return max(sorted(values), key=lambda job: sign * values[job])


def objective_name(config: DictConfig | None) -> str:
    """The `objective` setting of a sweep's config (`best_val_acc` where it has none)."""
    name = OmegaConf.select(config, "objective") if config is not None else None
    return str(name or DEFAULT_OBJECTIVE)


def objective_value(result: dict[str, Any] | None, objective: str) -> float | None:
    """The job's objective from its `result.json`; None where it is missing or not a number."""
    value = (result or {}).get(objective)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


def search_of(sweep_config: DictConfig) -> Search | None:
    """The search a sweep runs, checked; None for a plain sweep (its sweeper has no direction)."""
    direction = OmegaConf.select(sweep_config, "hydra.sweeper.direction")
    if direction is None:
        return None
    if isinstance(direction, (list, ListConfig)):
        raise ConfigurationError(
            f"hydra.sweeper.direction={list(direction)}: our searches have one objective, "
            "give one direction"
        )
    direction = str(getattr(direction, "name", direction))  # Optuna's Direction enum or text
    objective = objective_name(sweep_config)
    check_objective(objective, direction)
    return Search(objective, direction, searched_settings(sweep_config))


def check_objective(objective: str, direction: str) -> None:
    """Refuse a test figure, and a direction that would search for the worst models."""
    if "val" not in objective.split("_"):
        raise ConfigurationError(
            f"objective={objective} is not a validation figure of result.json: a search "
            f"chooses on validation ({DEFAULT_OBJECTIVE}), never on the test split"
        )
    wanted = "minimize" if any(w in objective for w in MINIMIZED_WORDS) else "maximize"
    if direction != wanted:
        raise ConfigurationError(
            f"hydra.sweeper.direction={direction} would look for the worst {objective}: "
            f"set hydra.sweeper.direction={wanted}"
        )


def searched_settings(sweep_config: DictConfig) -> tuple[str, ...]:
    """The settings the sweeper samples: its `params` and the command line's sweeps."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = OmegaConf.select(sweep_config, "hydra.sweeper.params") or {}
    overrides = [f"{key}={value}" for key, value in params.items()]
    overrides += list(OmegaConf.select(sweep_config, "hydra.overrides.task") or [])
    parsed = OverridesParser.create().parse_overrides(overrides)
    keys = [o.get_key_element() for o in parsed if o.is_sweep_override()]
    return tuple(dict.fromkeys(keys))  # in order, once each


def write_search(sweep_dir: Path, search: Search) -> None:
    """Write the search's record, `search.json`, into its sweep folder."""
    write_json(sweep_dir / SEARCH_FILE, {**asdict(search), "parameters": list(search.parameters)})


def read_search(sweep_dir: Path) -> Search | None:
    """The search record of a sweep folder; None for a plain sweep."""
    path = sweep_dir / SEARCH_FILE
    if not path.is_file():
        return None
    values = json.loads(path.read_text())
    return Search(values["objective"], values["direction"], tuple(values["parameters"]))
