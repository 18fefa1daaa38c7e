"""Experiment tracking: the wandb run of a job (online or offline) and the local CSV log."""

from __future__ import annotations

import functools
import logging
import os
import secrets
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from significance.errors import ConfigurationError
from significance.training.metrics_log import ResumableCSVLogger

log = logging.getLogger(__name__)

WANDB_MODES = ("auto", "online", "offline", "disabled")


def has_wandb_credentials() -> bool:
    """Whether `wandb login` (or WANDB_API_KEY) has given this machine an API key."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def resolve_wandb_mode(mode: str) -> str:
    """`auto` -> `WANDB_MODE` if set, else online when logged in and offline otherwise."""
    if mode not in WANDB_MODES:
        raise ConfigurationError(f"logger.wandb.mode must be one of {WANDB_MODES}, got {mode!r}")
    if mode != "auto":
        return mode
    return os.environ.get("WANDB_MODE") or ("online" if has_wandb_credentials() else "offline")


def online_or_offline(mode: str, timeout_s: float = 5.0) -> str:
    """`online` only when logged in and the wandb server answers; else `offline`, with a warning.

    A run must never fail (or hang in wandb.init) for want of a network or an account.
    """
    if mode != "online":
        return mode
    url = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    host, port = url.hostname or "api.wandb.ai", url.port or (443 if url.scheme != "http" else 80)
    if not has_wandb_credentials():
        reason = "this machine is not logged in (wandb login, or WANDB_API_KEY)"
    else:
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
            return mode
        except OSError as error:
            reason = f"{host}:{port} cannot be reached ({error})"
    log.warning(
        "wandb is set online but %s: this run logs offline; upload it later with "
        "`wandb sync <run folder>/wandb/offline-run-*`",
        reason,
    )
    return "offline"


def read_or_create_run_id(output_dir: Path) -> str:
    """The wandb run id of the job in `output_dir`, kept in `wandb_id.txt` for resumption."""
    id_file = output_dir / "wandb_id.txt"
    if id_file.is_file():
        return id_file.read_text().strip()
    run_id = secrets.token_hex(4)  # wandb's own ids are 8 characters of [a-z0-9] too
    if rank_zero_only.rank == 0:  # only rank 0 has a wandb run; others must not race to write
        output_dir.mkdir(parents=True, exist_ok=True)
        id_file.write_text(run_id + "\n")
    return run_id


def make_loggers(
    wandb_config: dict[str, Any] | None, output_dir: Path, run_config: dict[str, Any]
) -> list[Logger]:
    """A CSV log (always: it feeds the local curves) and, when configured, a wandb run."""
    loggers: list[Logger] = [ResumableCSVLogger(output_dir / "logs")]
    if not wandb_config:
        return loggers
    options = dict(wandb_config)
    mode = online_or_offline(resolve_wandb_mode(options.pop("mode", "auto")))
    if mode == "disabled":
        return loggers
    run_id = read_or_create_run_id(output_dir)
    wandb_logger = WandbLogger(
        save_dir=str(output_dir), id=run_id, mode=mode, resume="allow", **options
    )
    # Lightning always passes wandb.init anonymous=None, a deprecated setting wandb warns about.
    getattr(wandb_logger, "_wandb_init", {}).pop("anonymous", None)
    wandb_logger.log_hyperparams(run_config)
    if mode == "offline":
        log.info(
            "wandb runs offline into %s/wandb; upload it with `wandb sync %s/wandb/offline-run-*`",
            output_dir,
            output_dir,
        )
    loggers.append(wandb_logger)
    return loggers


def finish_wandb(exit_code: int = 0) -> None:
    """End this process's wandb run, if any, so the next job gets a run of its own."""
    # Never imported: no run to end (and a CSV-only run needs no wandb installed).
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish(exit_code=exit_code)


def finishes_tracking(function: Callable[[DictConfig], dict[str, Any]]) -> Callable:
    """End the job's wandb run when `function` returns (exit code 0) or fails (exit code 1).

    Without it the next job of a sweep in the same process would log into this job's run, and
    a crashed job would show as finished in the dashboard.
    """

    @functools.wraps(function)
    def wrapped(cfg: DictConfig) -> dict[str, Any]:
        try:
            result = function(cfg)
        except BaseException:
            try:  # wandb's service may be gone (a requeued SLURM job): the job's own error stands
                finish_wandb(1)
            except Exception:
                log.warning("Could not finish the wandb run", exc_info=True)
            raise
        finish_wandb(0)
        return result

    return wrapped
