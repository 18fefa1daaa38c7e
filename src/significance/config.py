"""Hydra/OmegaConf glue: resolvers the configs use, and turning configs into plain values.

Imported before Hydra composes a config: it must stay light (no torch, no Lightning).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from significance.errors import ConfigurationError
from significance.tasks import Task, discover_tasks, slugify


def register_resolvers() -> None:
    """Register `${slug:...}`, `${all_tasks:}`, `${run_dir:...}`, `${fold_tag:...}` and
    `${gpus_per_node:...}`; safe to call more than once."""
    OmegaConf.register_new_resolver("slug", slugify, replace=True)
    OmegaConf.register_new_resolver("fold_tag", fold_tag, replace=True)
    OmegaConf.register_new_resolver("all_tasks", all_tasks, replace=True)
    OmegaConf.register_new_resolver("run_dir", run_dir, replace=True)
    OmegaConf.register_new_resolver("gpus_per_node", gpus_per_node, replace=True)


def gpus_per_node(accelerator: str, devices: Any) -> Any:
    """The GPUs a SLURM job asks for on each node: `trainer.devices`, or none on CPUs.

    A CPU job that asked for GPUs would be refused by a cluster without them, or hold GPUs
    it never uses on one with them.
    """
    return None if accelerator == "cpu" else devices


def run_dir(resume: Any, default: str) -> str:
    """The run folder: `resume` when it names one (`resume=outputs/runs/...`), else `default`.

    Used as `${run_dir:${resume},...}` in `hydra.run.dir`, so that `resume=<folder>` both
    chooses the folder and resumes from its last checkpoint.
    """
    if isinstance(resume, str) and resume not in ("auto", "true", "false"):
        return resume
    return default


def fold_tag(fold: Any, separator: str = "_") -> str:
    """`_fold2` in the names of a cross-validation fold's folder (`-fold2`: wandb run), else
    nothing: names of runs without folds stay as they were."""
    return "" if fold is None else f"{separator}fold{fold}"


def config_dirs(config: DictConfig | None = None) -> list[Path]:
    """The folders Hydra composes this run's configuration from (`conf/`, `--config-dir`).

    Read from `config`'s `hydra.runtime` when it has one, else from the running job's.
    """
    config = OmegaConf.select(config, "hydra") if config is not None else None
    if config is None:  # a job's config holds no hydra node: the running job's then
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return []
        config = HydraConfig.get()
    sources = OmegaConf.select(config, "runtime.config_sources") or []
    return [Path(s.path) for s in sources if s.schema == "file" and Path(s.path).is_dir()]


def configured_tasks(config: DictConfig | None = None) -> list[Task]:
    """Every task under `task/` of the config folders (`config_dirs`; empty outside Hydra)."""
    tasks: dict[str, Task] = {}
    for directory in config_dirs(config):
        if (directory / "task").is_dir():
            tasks.update(discover_tasks(directory))
    return list(tasks.values())


def all_tasks(*, _root_: DictConfig) -> str:
    """Every task under `conf/task/`, comma-separated: the value of a sweep over all tasks.

    Hydra's `glob(*)` does not descend into `task/<artwork type>/`, hence this resolver. The
    sweeper resolves it before any job runs (no HydraConfig yet): the search path is read from
    the config being resolved.
    """
    tasks = configured_tasks(_root_)
    if not tasks:
        raise ConfigurationError("no task files found under task/ in the config search path")
    return ",".join(sorted(task.id for task in tasks))


def to_plain(config: DictConfig | Any) -> Any:
    """A resolved config as plain dicts and lists (for checkpoints and wandb)."""
    if isinstance(config, DictConfig):
        return OmegaConf.to_container(config, resolve=True)
    return config
