"""Refusing training settings that cannot work, before any data is read or model is built.

`check_values` needs neither torch nor Lightning: `train.py` runs it before it imports them,
so a bad value is answered at once; `train()` checks the machine, then every setting.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from significance.config import to_plain
from significance.data.balance import class_weight_problems, imbalance_advice, sampler_problems
from significance.data.folds import fold_problems
from significance.errors import ConfigurationError
from significance.hardware import check_global_batch, usable_cores

log = logging.getLogger(__name__)

# Five 2x poolings (VGG, ResNet, ConvNeXt): below 32 px the last feature map is empty.
DEFAULT_MIN_IMAGE_SIZE = 32


def check_environment(cfg: DictConfig, output_dir: Path) -> None:
    """Refuse devices this machine lacks, too small images and an unwritable output folder."""
    problems = [
        *_device_problems(cfg.trainer.accelerator, cfg.trainer.devices),
        *_image_size_problems(cfg.model.name, cfg.model.get("image_size")),
        *_writable_problems(output_dir),
    ]
    if problems:
        raise ConfigurationError("; ".join(problems))


def check_values(cfg: DictConfig) -> None:
    """Refuse values that cannot work on any machine; loads neither torch nor Lightning."""
    problems = _value_problems(cfg)
    if problems:
        raise ConfigurationError("; ".join(problems))


def validate_training_config(cfg: DictConfig) -> None:
    """Refuse settings that cannot work, before any data is read or model built."""
    problems = [*_value_problems(cfg), *_global_batch_problems(cfg), *_calibration_problems(cfg)]
    if problems:
        raise ConfigurationError("; ".join(problems))


def warn_about_settings(cfg: DictConfig) -> list[str]:
    """Log (and return) what would work, but against what the settings are for."""
    monitor = OmegaConf.select(cfg, "callbacks.best_checkpoint.monitor")
    advice = imbalance_advice(to_plain(cfg.loss.class_weights), cfg.data.sampler, monitor)
    for line in advice:
        log.warning(line)
    return advice


def _value_problems(cfg: DictConfig) -> list[str]:
    problems = []
    if cfg.optimizer.lr <= 0:
        problems.append(f"optimizer.lr must be > 0, got {cfg.optimizer.lr}")
    if cfg.data.batch_size < 1:
        problems.append(f"data.batch_size must be >= 1, got {cfg.data.batch_size}")
    if not 0 < cfg.data.val_fraction < 1:
        problems.append("data.val_fraction must be in (0, 1): validation chooses the checkpoint")
    problems += fold_problems(cfg.data.get("folds"), cfg.data.get("fold"))
    problems += sampler_problems(cfg.data.sampler)
    problems += class_weight_problems(to_plain(cfg.loss.class_weights), list(cfg.task.classes))
    return problems


def _calibration_problems(cfg: DictConfig) -> list[str]:
    from significance.models.calibration import CalibrationSettings  # loads torch

    try:  # here, not once training has ended and the temperature is fitted
        CalibrationSettings.from_config(OmegaConf.to_container(cfg.get("calibration") or {}))
    except ConfigurationError as error:
        return [str(error)]
    return []


def _global_batch_problems(cfg: DictConfig) -> list[str]:
    devices, nodes = cfg.trainer.get("devices"), cfg.trainer.get("num_nodes", 1)
    if isinstance(devices, int) and devices > 0 and isinstance(nodes, int) and nodes > 0:
        try:  # here, before the collection is scanned; the DataModule checks it again
            check_global_batch(cfg.data.batch_size, devices * nodes)
        except ConfigurationError as error:
            return [str(error)]
    return []


def _device_problems(accelerator: str, devices: Any) -> list[str]:
    if not isinstance(devices, int) or devices < 1:
        return []  # "auto", -1 and device lists are Lightning's to check
    import torch

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
    from significance.models.build import TINY_MODEL

    minimum = {TINY_MODEL: 4}.get(model_name, DEFAULT_MIN_IMAGE_SIZE)
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
