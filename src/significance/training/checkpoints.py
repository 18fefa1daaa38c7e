"""Crash safety: atomic checkpoint writes, and choosing the checkpoint a run resumes from.

A run resumes when its folder already holds `checkpoints/last.ckpt` (`resume=auto`, the
default), so rerunning a command with the same run folder (`hydra.run.dir=...`, a sweep's job
folder, or `resume=<run folder>`) continues where the run stopped.
"""

from __future__ import annotations

import errno
import logging
import warnings
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from significance.errors import CheckpointSaveError, ResumeError
from significance.files import atomic_write
from significance.models.module import read_checkpoint
from significance.run_files import LAST_CHECKPOINT, RESULT_FILE, SKIPPED_FILE, SPLIT_FILE
from significance.run_settings import length_changed, settings_conflict, write_run_settings
from significance.tasks import Task

log = logging.getLogger(__name__)


def checkpoint_to_resume(resume: Any, output_dir: Path) -> Path | None:
    """The last checkpoint this run continues from, or None for a fresh start."""
    last = output_dir / LAST_CHECKPOINT
    if resume is False or resume == "false":
        if last.is_file():
            log.warning("resume=false: starting afresh over the run in %s", output_dir)
        return None
    if last.is_file():
        return last
    if resume in ("auto", None):
        return None
    raise ResumeError(
        f"resume={resume} but there is nothing to resume: {last} does not exist "
        "(the run saved no last checkpoint yet, or the folder is another one)"
    )


def expect_own_checkpoints() -> None:
    """Silence Lightning's warning that a resumed run's checkpoints folder is not empty."""
    # The folder holds the very run being resumed: the warning is about our design, not a problem.
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")


def discard_previous_split(output_dir: Path) -> None:
    """A fresh start in a used folder draws its split anew (its seed, data or task may differ).

    The previous result goes too: should this run fail, no figure of the last one stands in
    for it (in `summary.csv`, say). Call on rank 0 only, before `fit`: the other ranks read
    the split this run then writes.
    """
    for name in (SPLIT_FILE, SKIPPED_FILE, RESULT_FILE):
        if (output_dir / name).is_file():
            log.info("Starting afresh: the previous %s in %s is replaced", name, output_dir)
            (output_dir / name).unlink()


def choose_resume(cfg: DictConfig, task: Task, output_dir: Path) -> Path | None:
    """The last checkpoint this run continues from (checked to be this run's), or None.

    The run's settings are recorded (a resumed run's length may have changed), for a rerun to
    be checked against.
    """
    resume_from = checkpoint_to_resume(cfg.get("resume", "auto"), output_dir)
    if resume_from is not None:
        conflict = settings_conflict(output_dir, cfg)
        if conflict:
            raise ResumeError(conflict)
        epoch = check_resumable(resume_from, task, cfg.model.name)
        log.info("Resuming %s from %s (saved in epoch %d)", task.id, resume_from, epoch)
        expect_own_checkpoints()
        if rank_zero_only.rank == 0 and length_changed(output_dir, cfg):
            (output_dir / RESULT_FILE).unlink(missing_ok=True)  # it finished the old length
    elif rank_zero_only.rank == 0:
        discard_previous_split(output_dir)
    if rank_zero_only.rank == 0:
        write_run_settings(output_dir, cfg)
    return resume_from


def check_resumable(path: Path, task: Task, model_name: str) -> int:
    """Refuse a last checkpoint of another task, class list or model; return its epoch."""
    checkpoint = read_checkpoint(path, mmap=True)  # mmap: do not read 2 GB just to check
    saved = (checkpoint.get("hyper_parameters") or {}) if isinstance(checkpoint, dict) else {}
    saved_task = saved.get("task") or {}
    saved_model = (saved.get("model") or {}).get("name")
    if "optimizer_states" not in checkpoint:
        raise ResumeError(f"{path} holds weights only, not the full state a run resumes from")
    if saved_task.get("id") != task.id:
        raise ResumeError(
            f"{path} was trained for task {saved_task.get('id')!r}, this run is {task.id!r}: "
            "choose another run folder (hydra.run.dir=...) or resume=false"
        )
    if list(saved_task.get("classes") or []) != list(task.classes):
        raise ResumeError(
            f"{path} was trained on the classes {list(saved_task.get('classes') or [])}, "
            f"task {task.id} now has {list(task.classes)}: choose another run folder"
        )
    if saved_model != model_name:
        raise ResumeError(
            f"{path} holds a {saved_model!r} model, this run builds {model_name!r}: "
            "choose another run folder or the same model"
        )
    return int(checkpoint.get("epoch", 0))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temporary file beside the target, then renamed over it.

    Lightning's own writer builds the whole file in memory, writes it to the system temporary
    folder and moves it, which is a copy (not atomic) when that folder is on another disk. Here
    a kill or a full disk at any moment leaves the previous checkpoint intact. Loading goes
    through `read_checkpoint`: `weights_only=True` always, with a clear message on refusal.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with atomic_write(path, "wb") as handle:
                torch.save(checkpoint, handle)
        except BaseException as error:
            if isinstance(error, OSError) or _is_disk_error(error):
                reason = "the disk is full" if _is_disk_full(error) else str(error)
                kept = f"the previous {path.name} is kept" if path.is_file() else "none kept"
                raise CheckpointSaveError(
                    f"cannot save checkpoint {path}: {reason}; {kept}. Free space in "
                    f"{path.parent} and rerun the same command to resume"
                ) from error
            raise

    def load_checkpoint(
        self, path: str | Path, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        # weights_only is forced: a resumed checkpoint is a file like any other.
        return read_checkpoint(path, map_location="cpu")


def _is_disk_full(error: BaseException) -> bool:
    return getattr(error, "errno", None) == errno.ENOSPC or "No space left" in str(error)


def _is_disk_error(error: BaseException) -> bool:
    # torch.save reports a failed write as RuntimeError ("file write failed").
    return isinstance(error, RuntimeError) and (
        _is_disk_full(error) or "write failed" in str(error)
    )
