"""Hydra/OmegaConf glue: resolvers the configs use, and turning configs into plain values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from significance.resume import run_dir
from significance.tasks import discover_tasks, slugify


def register_resolvers() -> None:
    """Register `${slug:...}`, `${all_tasks:}` and `${run_dir:...}`; safe to call more than once."""
    OmegaConf.register_new_resolver("slug", slugify, replace=True)
    OmegaConf.register_new_resolver("all_tasks", all_tasks, replace=True)
    OmegaConf.register_new_resolver("run_dir", run_dir, replace=True)


def config_dirs(config: DictConfig | None = None) -> list[Path]:
    """The folders Hydra composes this run's configuration from (`conf/`, `--config-dir`).

    Read from `config`'s `hydra.runtime` when given, else from the running job's.
    """
    if config is None:
        from hydra.core.hydra_config import HydraConfig

        config = HydraConfig.get()
    else:
        config = OmegaConf.select(config, "hydra")
    sources = OmegaConf.select(config, "runtime.config_sources") or []
    return [Path(s.path) for s in sources if s.schema == "file" and Path(s.path).is_dir()]


def all_tasks(*, _root_: DictConfig) -> str:
    """Every task under `conf/task/`, comma-separated: the value of a sweep over all tasks.

    Hydra's `glob(*)` does not descend into `task/<artwork type>/`, hence this resolver. The
    sweeper resolves it before any job runs (no HydraConfig yet): the search path is read from
    the config being resolved.
    """
    tasks: dict[str, Any] = {}
    for directory in config_dirs(_root_):
        if (directory / "task").is_dir():
            tasks.update(discover_tasks(directory))
    if not tasks:
        raise ValueError("no task files found under task/ in the config search path")
    return ",".join(sorted(tasks))


def to_plain(config: DictConfig | Any) -> Any:
    """A resolved config as plain dicts and lists (for checkpoints and wandb)."""
    if isinstance(config, DictConfig):
        return OmegaConf.to_container(config, resolve=True)
    return config
