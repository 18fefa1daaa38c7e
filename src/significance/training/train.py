"""Training one task: the plain function behind `train.py` (one Hydra job, any number of ranks).

`train` is a list of named steps; `finishes_tracking` ends the job's wandb run however it ends.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.distributed
from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import DictConfig

from significance.checkpoint_evaluation import evaluate_checkpoint
from significance.config import configured_tasks, to_plain
from significance.data.datamodule import ArtworkDataModule, LoaderSettings
from significance.data.run_split import CollectionSettings, SplitSettings
from significance.files import write_json
from significance.hardware import keep_freed_memory, warn_if_bf16_emulated
from significance.models.build import preprocessing_for
from significance.models.calibration import CalibrationSettings
from significance.models.module import ArtworkClassifier
from significance.reporting.checkpoint_report import git_commit
from significance.reporting.dashboard import report_training_run
from significance.run_files import LAST_CHECKPOINT, RESULT_FILE, SPLIT_FILE
from significance.tasks import Task
from significance.training.calibration import calibrate_checkpoint
from significance.training.checkpoints import (
    AtomicCheckpointIO,
    choose_resume,
)
from significance.training.class_weighting import ClassWeightsFromSplit
from significance.training.metrics_log import ContinueMetricsLog
from significance.training.preflight import (
    check_environment,
    validate_training_config,
    warn_about_settings,
)
from significance.training.time_limit import CheckpointOnTimeLimit
from significance.training.tracking import finishes_tracking, make_loggers

log = logging.getLogger(__name__)


@finishes_tracking
def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit the task's model, keep the best checkpoint on validation, calibrate it there, test it.

    Returns (and writes to `result.json` in the run folder) the job's result; ranks other
    than 0 return an empty dict. Test figures come from a single-device evaluation of the best
    checkpoint, exactly as `evaluate.py` computes them.
    """
    started = time.time()
    keep_freed_memory()
    output_dir = Path(cfg.paths.output_dir)
    task = Task.from_config(cfg.task)
    check_settings(cfg, output_dir)
    resume_from = choose_resume(cfg, task, output_dir)
    L.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg, task, output_dir)
    model = build_model(cfg, task, datamodule, output_dir)
    loggers = make_loggers(to_plain(cfg.logger.wandb), output_dir, to_plain(cfg))
    trainer = build_trainer(cfg, loggers, output_dir)
    compile_network(model, cfg.get("compile"))
    trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from)
    if not leave_process_group(trainer):
        return {}
    metrics = test_best_checkpoint(cfg, trainer, output_dir)
    result = job_result(cfg, task, trainer, model, metrics, output_dir, started)
    log_test_summary(loggers, metrics)
    report_training_run(loggers, output_dir, output_dir / "test")
    write_json(output_dir / RESULT_FILE, result)
    log.info(
        "Finished %s%s: test acc %.4f, macro F1 %.4f, best checkpoint %s",
        task.id,
        "" if result["fold"] is None else f" (fold {result['fold']})",
        result["test_acc"],
        result["test_f1_macro"],
        result["checkpoint"],
    )
    return result


def check_settings(cfg: DictConfig, output_dir: Path) -> None:
    """Refuse what cannot work on this machine or at all, before any data is read."""
    check_environment(cfg, output_dir)  # first: a machine without the devices says so
    validate_training_config(cfg)
    warn_about_settings(cfg)
    warn_if_bf16_emulated(cfg.trainer.precision, cfg.trainer.accelerator)


def build_datamodule(cfg: DictConfig, task: Task, output_dir: Path) -> ArtworkDataModule:
    """The task's data: the run's split (drawn once, in `split.csv`) and its loaders."""
    data = to_plain(cfg.data)
    split = SplitSettings(
        test_fraction=data["test_fraction"],
        val_fraction=data["val_fraction"],
        seed=data["seed"],
        tasks=tuple(configured_tasks(cfg)),
        folds=data.get("folds"),
        fold=data.get("fold"),
    )
    loader = LoaderSettings(
        batch_size=data["batch_size"],
        num_workers=data["num_workers"],
        cache=data["cache"],
        cache_dir=Path(data["cache_dir"]),
        seed=data["seed"],
        sampler=data["sampler"],
    )
    return ArtworkDataModule(
        task=task,
        preprocessing=preprocessing_for(cfg.model.name, cfg.model.image_size, cfg.model.weights),
        split_file=output_dir / SPLIT_FILE,
        collection=CollectionSettings.from_config(data),
        split=split,
        loader=loader,
        test_each_epoch=bool(cfg.get("report_test_selected", False)),
    )


def build_model(
    cfg: DictConfig, task: Task, datamodule: ArtworkDataModule, output_dir: Path
) -> ArtworkClassifier:
    """The LightningModule, with everything its checkpoint must say about itself."""
    return ArtworkClassifier(
        task=task.to_dict(),
        model=to_plain(cfg.model),
        optimizer=to_plain(cfg.optimizer),
        preprocessing=datamodule.preprocessing.to_dict(),
        data={
            "root": str(datamodule.root.resolve()),
            "layout": datamodule.layout,
            "annotations_file": datamodule.annotations_file,
        },
        seed=int(cfg.seed),
        split_file=str((output_dir / SPLIT_FILE).resolve()),
        channels_last=bool(cfg.get("channels_last", False)),
        scheduler=to_plain(cfg.get("scheduler")),
        commit=git_commit(),
    )


def build_trainer(cfg: DictConfig, loggers: list[Logger], output_dir: Path) -> L.Trainer:
    """Lightning's Trainer with the configured callbacks, atomic checkpoints and our samplers."""
    callbacks = [instantiate(callback) for callback in cfg.callbacks.values() if callback]
    callbacks.append(ContinueMetricsLog())
    callbacks.append(ClassWeightsFromSplit(to_plain(cfg.loss.class_weights)))
    callbacks.append(CheckpointOnTimeLimit(output_dir / LAST_CHECKPOINT))  # under SLURM only
    return L.Trainer(
        **to_plain(cfg.trainer),
        logger=loggers,
        callbacks=callbacks,
        default_root_dir=str(output_dir),
        plugins=[AtomicCheckpointIO()],
        # The DataModule's samplers: seeded by epoch, evaluation without padded repeats.
        use_distributed_sampler=False,
    )


def test_best_checkpoint(cfg: DictConfig, trainer: L.Trainer, output_dir: Path) -> dict[str, Any]:
    """Calibrate the checkpoint chosen on validation, test it on one device as evaluate.py does."""
    # The first ModelCheckpoint of conf/callbacks is the one that monitors val/acc.
    best = trainer.checkpoint_callback.best_model_path
    if not best:
        raise RuntimeError("training saved no checkpoint: was there a validation set?")
    loading = {
        "accelerator": cfg.trainer.accelerator,
        "batch_size": cfg.data.batch_size,
        "num_workers": cfg.data.num_workers,
        "cache_dir": cfg.data.cache_dir if cfg.data.cache else None,
    }
    settings = CalibrationSettings.from_config(to_plain(cfg.get("calibration")))
    calibrate_checkpoint(best, settings, **loading)
    return evaluate_checkpoint(best, output_dir / "test", calibrated=settings.enabled, **loading)


def job_result(
    cfg: DictConfig,
    task: Task,
    trainer: L.Trainer,
    model: ArtworkClassifier,
    metrics: dict[str, Any],
    output_dir: Path,
    started: float,
) -> dict[str, Any]:
    """The job's `result.json`: what the sweep's summary and reports are made of."""
    best_val = trainer.checkpoint_callback.best_model_score
    return {
        "task": task.id,
        "seed": int(cfg.seed),
        "fold": cfg.data.get("fold"),  # the cross-validation fold tested on; None without folds
        "status": "ok",
        "best_val_acc": float(best_val) if best_val is not None else None,
        # The epoch (from 0) whose weights are best.ckpt; None with another callback.
        "best_epoch": getattr(trainer.checkpoint_callback, "best_epoch", None),
        **test_selected(model),
        "test_acc": metrics["test/acc"],
        "test_acc_macro": metrics["test/acc_macro"],
        # The mean of the classes' recalls: what macro accuracy is (torchmetrics' conventions).
        "test_balanced_acc": metrics["test/acc_macro"],
        "test_f1_macro": metrics["test/f1_macro"],
        "test_loss": metrics["test/loss"],
        "test_ece": metrics["test/ece"],
        "test_ece_calibrated": metrics["test/ece_calibrated"],
        "temperature": metrics["calibration"]["temperature"],
        "checkpoint": str(Path(trainer.checkpoint_callback.best_model_path).resolve()),
        "epochs": trainer.current_epoch,
        "wall_time_s": round(time.time() - started, 1),
        "output_dir": str(output_dir.resolve()),
    }


def test_selected(model: ArtworkClassifier) -> dict[str, Any]:
    """The study's own figure (report_test_selected): the best test accuracy over the epochs.

    Choosing the epoch on the test set inflates it; it is reported beside ours, never used.
    """
    if not model.test_accuracy_by_epoch:
        return {}
    epoch = max(model.test_accuracy_by_epoch, key=lambda e: (model.test_accuracy_by_epoch[e], -e))
    return {"test_selected_acc": model.test_accuracy_by_epoch[epoch], "test_selected_epoch": epoch}


def compile_network(model: ArtworkClassifier, options: Any) -> None:
    """Compile the model's network in place when asked: true, a mode, or torch.compile's arguments.

    The network alone: compiling the whole LightningModule traces its steps' metric updates
    too, which torchmetrics does not survive; in place, the checkpoint's keys stay the same.
    """
    if not options:
        return
    if isinstance(options, bool):
        arguments = {}
    elif isinstance(options, str):  # compile=max-autotune
        arguments = {"mode": options}
    else:
        arguments = to_plain(options)
    log.info("Compiling the network with torch.compile(%s)", arguments or "")
    model.net.compile(**arguments)


def leave_process_group(trainer: L.Trainer) -> bool:
    """After a multi-process fit, end the process group; True only on the process that goes on.

    The test then runs on rank 0 alone, on one device: a distributed test pads its last batch.
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
