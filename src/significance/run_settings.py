"""The settings a run's figures depend on, kept in its folder: continuing it with others is refused.

A run folder is continued by a rerun (the same `hydra.run.dir`, `resume=<folder>`, a sweep rerun
into the same `hydra.sweep.dir`, a SLURM requeue), and its name does not say its settings (a
sweep job's is its number, task and seed). Every run writes `settings.json`: its config as
composed, interpolations unresolved (`${seed}` stays `${seed}`, whatever the machine's paths),
less what does not change its figures (`IGNORED`). A rerun that would resume the run, or skip it
as finished, with other values is refused and says which; only its length may grow
(`LENGTH`). Light: no torch.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from significance.files import write_json
from significance.run_files import LAST_CHECKPOINT, SETTINGS_FILE, finished_result

# Where things are, how fast and how loudly a run goes, how often it saves, and what the
# launcher adds: none changes a figure, and all may differ between a run and its rerun.
IGNORED = (
    "hydra",
    "group",
    "resume",
    "objective",
    "logger",
    "paths",
    "channels_last",
    "compile",
    "data.num_workers",
    "data.cache",
    "data.cache_dir",
    "data.facts_file",
    "trainer.log_every_n_steps",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "callbacks.progress_bar",
    "callbacks.last_checkpoint",  # how often the full state is saved, not what is trained
)
# How long it trains: a run may be continued to a greater length (more epochs, say), and a
# sweep job that finished at another length is run again, resuming, instead of skipped.
LENGTH = ("trainer.max_epochs", "trainer.max_time")
SHOWN = 4  # differences named in the message; the rest are counted


class _Absent:
    """A setting one side does not have (added by `+key=`, or the whole group unset)."""

    def __repr__(self) -> str:
        return "(absent)"


ABSENT = _Absent()


def run_settings(cfg: DictConfig) -> dict[str, Any]:
    """The config as composed (interpolations unresolved), less `IGNORED`."""

    def kept(node: Any, prefix: str) -> Any:
        if not isinstance(node, dict):
            return node
        paths = {key: f"{prefix}.{key}" if prefix else str(key) for key in node}
        return {
            key: kept(value, paths[key]) for key, value in node.items() if not _ignored(paths[key])
        }

    return kept(OmegaConf.to_container(cfg, resolve=False), "")


def write_run_settings(output_dir: Path, cfg: DictConfig) -> None:
    """Record the run's settings in its folder (rank 0's to do)."""
    write_json(output_dir / SETTINGS_FILE, run_settings(cfg))


def changed_settings(output_dir: Path, cfg: DictConfig) -> dict[str, tuple[Any, Any]]:
    """(before, now) of each setting, by dotted key, in which `cfg` differs from the folder's run.

    A setting one side lacks counts (`ABSENT`): `+trainer.gradient_clip_val=1`, say, or a
    group set where it was null (`scheduler=cosine`).
    """
    try:
        before = json.loads((output_dir / SETTINGS_FILE).read_text())
    except (OSError, ValueError):
        return {}  # a run from before settings were kept, or none
    return _differences(before, run_settings(cfg), "")


def conflicting_settings(output_dir: Path, cfg: DictConfig) -> str:
    """`key: before -> now` of the settings that forbid `cfg` to continue the run in `output_dir`.

    '' when it may, or when nothing is there to continue. Its length (`LENGTH`) may grow: the
    run then goes on to the new one.
    """
    if not ((output_dir / LAST_CHECKPOINT).is_file() or finished_result(output_dir)):
        return ""  # nothing to resume or to skip: a fresh run will replace what is there
    changed = [
        f"{key}: {_show(before)} -> {_show(now)}"
        for key, (before, now) in changed_settings(output_dir, cfg).items()
        if key not in LENGTH or _shorter(before, now)
    ]
    more = f" and {len(changed) - SHOWN} more" if len(changed) > SHOWN else ""
    return "; ".join(changed[:SHOWN]) + more


def settings_conflict(output_dir: Path, cfg: DictConfig) -> str:
    """Why `cfg` may not continue the run in `output_dir` ('' when it may)."""
    changed = conflicting_settings(output_dir, cfg)
    if not changed:
        return ""
    return (
        f"{output_dir} holds a run with other settings ({changed}): run in another folder "
        "(hydra.run.dir), or add resume=false to train afresh over it"
    )


def length_changed(output_dir: Path, cfg: DictConfig) -> bool:
    """Whether `cfg` asks the run in `output_dir` to train for another length."""
    return any(key in LENGTH for key in changed_settings(output_dir, cfg))


def _differences(before: Any, now: Any, prefix: str) -> dict[str, tuple[Any, Any]]:
    if not (isinstance(before, dict) and isinstance(now, dict)):
        return {} if before == now else {prefix: (before, now)}
    found: dict[str, tuple[Any, Any]] = {}
    for key in sorted(before.keys() | now.keys()):
        path = f"{prefix}.{key}" if prefix else str(key)
        found.update(_differences(before.get(key, ABSENT), now.get(key, ABSENT), path))
    return found


def _shorter(before: Any, now: Any) -> bool:
    """A max_epochs below the run's: Lightning would stop at once, past it (-1: no limit)."""
    if not (isinstance(before, int) and isinstance(now, int)):
        return False
    return _epochs(now) < _epochs(before)


def _epochs(max_epochs: int) -> float:
    return math.inf if max_epochs < 0 else max_epochs


def _ignored(key: str) -> bool:
    return any(key == name or key.startswith(name + ".") for name in IGNORED)


def _show(value: Any) -> str:
    shown = repr(value) if value is ABSENT else json.dumps(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."
