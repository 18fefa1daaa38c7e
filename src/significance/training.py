"""Training one task: the plain function behind `train.py` (one Hydra job, any number of ranks)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.distributed
from hydra.utils import instantiate
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from significance.config import configured_tasks, to_plain
from significance.data.datamodule import ArtworkDataModule, check_global_batch
from significance.evaluation import evaluate_checkpoint, write_json
from significance.memory import keep_freed_memory
from significance.models.build import preprocessing_for
from significance.models.module import ArtworkClassifier
from significance.processes import RESULT_FILE
from significance.reporting.dashboard import report_training_run
from significance.resume import (
    AtomicCheckpointIO,
    ContinueMetricsLog,
    check_resumable,
    checkpoint_to_resume,
    discard_previous_split,
)
from significance.speed import warn_if_bf16_emulated
from significance.tasks import Task
from significance.tracking import finish_wandb, make_loggers
from significance.validation import ConfigurationError, check_environment

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit the task's model, keep the best checkpoint on validation, test it on one device.

    Returns (and writes to `result.json` in the run folder) the job's result; ranks other
    than 0 return an empty dict. Test figures come from a single-device evaluation of the best
    checkpoint, exactly as `evaluate.py` computes them.
    """
    started = time.time()
    keep_freed_memory()
    output_dir = Path(cfg.paths.output_dir)
    task = Task.from_config(cfg.task)
    check_environment(cfg, output_dir)  # first: a machine without the devices says so
    validate_training_config(cfg)
    warn_if_bf16_emulated(cfg.trainer.precision, cfg.trainer.accelerator)
    resume_from = checkpoint_to_resume(cfg.get("resume", "auto"), output_dir)
    if resume_from is not None:
        epoch = check_resumable(resume_from, task, cfg.model.name)
        log.info("Resuming %s from %s (saved in epoch %d)", task.id, resume_from, epoch)
    elif rank_zero_only.rank == 0:
        discard_previous_split(output_dir)
    L.seed_everything(cfg.seed, workers=True)
    preprocessing = preprocessing_for(cfg.model.name, cfg.model.image_size, cfg.model.weights)
    split_file = output_dir / "split.csv"
    datamodule = ArtworkDataModule(
        task=task,
        preprocessing=preprocessing,
        split_file=split_file,
        collection_tasks=configured_tasks(cfg),
        test_each_epoch=bool(cfg.get("report_test_selected", False)),
        **to_plain(cfg.data),
    )
    model = ArtworkClassifier(
        task=task.to_dict(),
        model=to_plain(cfg.model),
        optimizer=to_plain(cfg.optimizer),
        preprocessing=preprocessing.to_dict(),
        data={
            "root": str(datamodule.root.resolve()),
            "layout": datamodule.layout,
            "annotations_file": datamodule.annotations_file,
        },
        seed=int(cfg.seed),
        split_file=str(split_file.resolve()),
        channels_last=bool(cfg.get("channels_last", False)),
    )
    loggers = make_loggers(to_plain(cfg.logger.wandb), output_dir, to_plain(cfg))
    callbacks = [instantiate(callback) for callback in cfg.callbacks.values() if callback]
    callbacks.append(ContinueMetricsLog())
    trainer = L.Trainer(
        **to_plain(cfg.trainer),
        logger=loggers,
        callbacks=callbacks,
        default_root_dir=str(output_dir),
        plugins=[AtomicCheckpointIO()],
        # The DataModule's samplers: seeded by epoch, evaluation without padded repeats.
        use_distributed_sampler=False,
    )
    try:
        trainer.fit(
            compiled(model, cfg.get("compile")), datamodule=datamodule, ckpt_path=resume_from
        )
        # The first ModelCheckpoint of conf/callbacks is the one that monitors val/acc.
        best = trainer.checkpoint_callback.best_model_path
        best_val = trainer.checkpoint_callback.best_model_score
        if not leave_process_group(trainer):
            return {}
        if not best:
            raise RuntimeError("training saved no checkpoint: was there a validation set?")
        metrics = evaluate_checkpoint(
            best,
            output_dir / "test",
            accelerator=cfg.trainer.accelerator,
            batch_size=cfg.data.batch_size,
            num_workers=cfg.data.num_workers,
            cache_dir=cfg.data.cache_dir if cfg.data.cache else None,
        )
        result = {
            "task": task.id,
            "seed": int(cfg.seed),
            "status": "ok",
            "best_val_acc": float(best_val) if best_val is not None else None,
            # The epoch (from 0) whose weights are best.ckpt; None with another callback.
            "best_epoch": getattr(trainer.checkpoint_callback, "best_epoch", None),
            **test_selected(model),
            "test_acc": metrics["test/acc"],
            "test_acc_macro": metrics["test/acc_macro"],
            "test_f1_macro": metrics["test/f1_macro"],
            "test_loss": metrics["test/loss"],
            "checkpoint": str(Path(best).resolve()),
            "epochs": trainer.current_epoch,
            "wall_time_s": round(time.time() - started, 1),
            "output_dir": str(output_dir.resolve()),
        }
        log_test_summary(loggers, metrics)
        report_training_run(loggers, output_dir, output_dir / "test")
        write_json(output_dir / RESULT_FILE, result)
        log.info(
            "Finished %s: test acc %.4f, macro F1 %.4f, best checkpoint %s",
            task.id,
            result["test_acc"],
            result["test_f1_macro"],
            best,
        )
        finish_wandb(0)
        return result
    except BaseException:
        finish_wandb(1)
        raise


def test_selected(model: ArtworkClassifier) -> dict[str, Any]:
    """The study's own figure (report_test_selected): the best test accuracy over the epochs.

    Choosing the epoch on the test set inflates it; it is reported beside ours, never used.
    """
    if not model.test_accuracy_by_epoch:
        return {}
    epoch = max(model.test_accuracy_by_epoch, key=lambda e: (model.test_accuracy_by_epoch[e], -e))
    return {"test_selected_acc": model.test_accuracy_by_epoch[epoch], "test_selected_epoch": epoch}


def compiled(model: ArtworkClassifier, options: Any) -> ArtworkClassifier:
    """The model with its network compiled in place when asked: true, a mode, or the arguments.

    The network alone: compiling the whole LightningModule traces its steps' metric updates
    too, which torchmetrics does not survive; in place, the checkpoint's keys stay the same.
    """
    if options:
        if isinstance(options, bool):
            arguments = {}
        elif isinstance(options, str):  # compile=max-autotune
            arguments = {"mode": options}
        else:
            arguments = to_plain(options)
        log.info("Compiling the network with torch.compile(%s)", arguments or "")
        model.net.compile(**arguments)
    return model


def validate_training_config(cfg: DictConfig) -> None:
    """Refuse settings that cannot work, before any data is read or model built."""
    problems = []
    if cfg.optimizer.lr <= 0:
        problems.append(f"optimizer.lr must be > 0, got {cfg.optimizer.lr}")
    if cfg.data.batch_size < 1:
        problems.append(f"data.batch_size must be >= 1, got {cfg.data.batch_size}")
    if not 0 < cfg.data.val_fraction < 1:
        problems.append("data.val_fraction must be in (0, 1): validation chooses the checkpoint")
    devices, nodes = cfg.trainer.get("devices"), cfg.trainer.get("num_nodes", 1)
    if isinstance(devices, int) and devices > 0 and isinstance(nodes, int) and nodes > 0:
        try:  # here, before the collection is scanned; the DataModule checks it again
            check_global_batch(cfg.data.batch_size, devices * nodes)
        except ValueError as error:
            problems.append(str(error))
    if problems:
        raise ConfigurationError("; ".join(problems))


def leave_process_group(trainer: L.Trainer) -> bool:
    """After a multi-process fit, end the process group; True only on the process that goes on.

    The test then runs on rank 0 alone, on one device, as PITFALLS.md advises.
    """
    if trainer.world_size == 1:
        return True
    trainer.strategy.barrier("fit finished")
    is_zero = trainer.is_global_zero
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return is_zero


def log_test_summary(loggers: list, metrics: dict[str, Any]) -> None:
    """Put the test figures into every logger (the wandb run's summary among them)."""
    scalars = {
        key: value
        for key, value in metrics.items()
        if key.startswith("test/") and isinstance(value, (int, float))
    }
    for logger in loggers:
        logger.log_metrics(scalars)
        if isinstance(logger, WandbLogger):
            logger.experiment.summary.update(scalars)
        logger.save()
