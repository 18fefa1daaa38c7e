"""Refusing what cannot work, early and in one line: bad settings, a machine that lacks them.

`check_environment` runs before any data is read or any model is built; `run_entry_point`
turns the errors a user can fix into one line on stderr and a non-zero exit, instead of a
traceback.
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import torch
from omegaconf import DictConfig

from significance.models.build import TINY_MODEL, PretrainedWeightsMissing
from significance.speed import usable_cores

log = logging.getLogger(__name__)

# Five 2x poolings (VGG, ResNet, ConvNeXt): below 32 px the last feature map is empty.
MIN_IMAGE_SIZE = {TINY_MODEL: 4}
DEFAULT_MIN_IMAGE_SIZE = 32
EXIT_USER_ERROR = 1


class ConfigurationError(ValueError):
    """A setting that cannot work; the message names it and says what would."""


def check_environment(cfg: DictConfig, output_dir: Path) -> None:
    """Refuse devices this machine lacks, too small images and an unwritable output folder."""
    problems = [
        *_device_problems(cfg.trainer.accelerator, cfg.trainer.devices),
        *_image_size_problems(cfg.model.name, cfg.model.get("image_size")),
        *_writable_problems(output_dir),
    ]
    if problems:
        raise ConfigurationError("; ".join(problems))


def _device_problems(accelerator: str, devices: Any) -> list[str]:
    if not isinstance(devices, int) or devices < 1:
        return []  # "auto", -1 and device lists are Lightning's to check
    gpus = torch.cuda.device_count()
    if accelerator in ("gpu", "cuda") and gpus == 0:
        return [f"trainer.accelerator={accelerator} but this machine has no CUDA GPU"]
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and gpus > 0):
        if devices > gpus:
            return [f"trainer.devices={devices} but this machine has {gpus} GPU(s)"]
        return []
    cores = usable_cores()
    if accelerator in ("cpu", "auto") and devices > cores:
        return [
            f"trainer.devices={devices} processes but this machine has {cores} CPU core(s) "
            "and no GPU"
        ]
    return []


def _image_size_problems(model_name: str, image_size: int | None) -> list[str]:
    minimum = MIN_IMAGE_SIZE.get(model_name, DEFAULT_MIN_IMAGE_SIZE)
    if image_size is not None and image_size < minimum:
        return [f"model.image_size={image_size} is below the {minimum} px {model_name} accepts"]
    return []


def _writable_problems(output_dir: Path) -> list[str]:
    probe = output_dir / f".write-test-{uuid.uuid4().hex}"
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        return [f"cannot write to the output folder {output_dir} ({error.strerror or error})"]
    return []


def user_errors() -> tuple[type[BaseException], ...]:
    """The errors whose message alone tells the user what to do (no traceback needed)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from significance.data.collection import CollectionError
    from significance.data.images import UnreadableImageError
    from significance.data.split import SplitError
    from significance.models.module import CheckpointError
    from significance.pipeline.loading import PipelineError
    from significance.processes import SweepJobFailed
    from significance.resume import CheckpointSaveError, ResumeError

    return (
        ConfigurationError,
        CheckpointError,
        CheckpointSaveError,
        ResumeError,
        PretrainedWeightsMissing,
        SplitError,
        CollectionError,  # data root missing, unknown labels, class folders not the task's
        UnreadableImageError,  # a validation or test image broken after the split was made
        PipelineError,  # a checkpoint in the wrong slot of a pipeline
        SweepJobFailed,
        HydraException,  # unknown task or config group, misspelt key, bad override syntax
        OmegaConfBaseException,
    )


def run_entry_point(main: Callable[[], None]) -> None:
    """Run a `@hydra.main` function; what the user can fix ends in one line and exit code 1.

    Hydra prints its own errors over several lines (or a traceback, for a folder it cannot
    create); it is told to raise them instead (HYDRA_FULL_ERROR, inherited by DDP ranks and
    sweep jobs, which run through here too) and they are reported here in one line. Anything
    else, a bug, keeps its full traceback.
    """
    os.environ["HYDRA_FULL_ERROR"] = "1"
    sys.stderr = _WithoutHydraJobErrorLine(sys.stderr)
    try:
        main()
    except torch.cuda.OutOfMemoryError as error:
        _exit(
            f"out of GPU memory ({str(error).splitlines()[0][:200]}): try a smaller "
            "data.batch_size (it is the global batch) or trainer.precision=bf16-mixed"
        )
    except user_errors() as error:
        _exit(one_line(error))
    except OSError as error:
        if error.filename is None:
            raise
        _exit(f"{error.strerror or error}: {error.filename}")


def one_line(error: BaseException) -> str:
    """An error's message on one line: its first line, and the first line of its cause."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    cause = error.__cause__
    if cause is not None and str(cause).strip():
        first = f"{first.rstrip('.')}: {str(cause).strip().splitlines()[0]}"
    if "not in struct" in first:
        first += " (misspelt? a new key needs a leading +)"
    if "Could not find 'task/" in first:
        first += f" (tasks: {', '.join(_known_tasks())})"
    return first


def _known_tasks() -> list[str]:
    from significance.tasks import discover_tasks

    root = Path(os.environ.get("SIGNIFICANCE_ROOT", "."))
    return sorted(discover_tasks(root / "conf")) if (root / "conf" / "task").is_dir() else []


class _WithoutHydraJobErrorLine:
    """stderr without the line Hydra writes before re-raising a job's error.

    Hydra writes "Error executing job with overrides: [...]" straight to stderr; our own
    `error:` line says what went wrong and what to do, so the user reads one line, not two.
    """

    prefix = "Error executing job with overrides:"

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return len(text) if text.startswith(self.prefix) else self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _exit(message: str) -> None:
    # Into the run's log file only: the console gets the one `error:` line below.
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(
                log.makeRecord(log.name, logging.ERROR, __file__, 0, message, None, None)
            )
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_USER_ERROR)
