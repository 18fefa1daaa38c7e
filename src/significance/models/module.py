"""The LightningModule: a classifier for one task, its loss, metrics and optimiser."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from significance.data.samplers import epoch_seed
from significance.data.transforms import Preprocessing
from significance.errors import CheckpointError
from significance.models.build import build_classifier
from significance.models.calibration import Calibration, calibrated_probabilities
from significance.models.optimizers import make_optimizer, make_scheduler
from significance.tasks import Task

log = logging.getLogger(__name__)


def summary_metrics(num_classes: int) -> MetricCollection:
    """Accuracy (micro, as the study reports it), macro accuracy and macro F1."""
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "acc_macro": MulticlassAccuracy(num_classes, average="macro"),
            "f1_macro": MulticlassF1Score(num_classes, average="macro"),
        }
    )


def per_class_metrics(num_classes: int) -> MetricCollection:
    """Precision, recall and F1 of every class, and the confusion matrix (the test's tables)."""
    return MetricCollection(
        {
            "precision": MulticlassPrecision(num_classes, average=None),
            "recall": MulticlassRecall(num_classes, average=None),
            "f1": MulticlassF1Score(num_classes, average=None),
            "confusion": MulticlassConfusionMatrix(num_classes),
        }
    )


class ArtworkClassifier(L.LightningModule):
    """A torchvision classifier fine-tuned for one task.

    Every argument is a plain value and is saved into the checkpoint, which is therefore
    enough to rebuild the model, its classes and its preprocessing (`load_classifier`).
    `optimizer` and `scheduler` are Hydra configs (`conf/optimizer/`, `conf/scheduler/`),
    instantiated in `configure_optimizers`.
    """

    def __init__(
        self,
        task: dict[str, Any],
        model: dict[str, Any],
        optimizer: dict[str, Any],
        preprocessing: dict[str, Any],
        data: dict[str, Any] | None = None,
        seed: int = 0,
        split_file: str | None = None,
        channels_last: bool = False,
        scheduler: dict[str, Any] | None = None,
        commit: str | None = None,  # the code that trained it; None in checkpoints before 0.2
        class_weights: list[float] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.task = Task.from_config(task)
        self.preprocessing = Preprocessing.from_dict(preprocessing)
        num_classes = len(self.task.classes)
        self.net = build_classifier(
            model["name"],
            num_classes,
            bool(model.get("pretrained")),
            model.get("weights", "DEFAULT"),
            # Checkpoints made before model.head existed kept ImageNet's linear layers.
            model.get("head", "pretrained"),
        )
        # Module.to(device) keeps each tensor's layout: NHWC set here stays on the GPU.
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.net = self.net.to(memory_format=self.memory_format)
        self.criterion = nn.CrossEntropyLoss()
        # loss.class_weights weigh the training loss only: validation and test stay comparable.
        self.register_buffer("loss_weights", None, persistent=False)
        self.use_class_weights(class_weights)
        self.train_metrics = summary_metrics(num_classes).clone(prefix="train/")
        self.val_metrics = summary_metrics(num_classes).clone(prefix="val/")
        self.test_metrics = summary_metrics(num_classes).clone(prefix="test/")
        self.test_per_class = per_class_metrics(num_classes)
        self.test_loss = MeanMetric()
        self.val_loss = MeanMetric()
        # report_test_selected: the test split scored after every epoch, for the study's figure.
        self.test_each_epoch = MulticlassAccuracy(num_classes, average="micro")
        self.test_accuracy_by_epoch: dict[int, float] = {}
        self.test_results: dict[str, Any] = {}
        # Set from the checkpoint by load_classifier; divides the logits of every probability.
        self.calibration = Calibration()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images.contiguous(memory_format=self.memory_format))

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        images, targets = batch
        logits = self(images)
        return self.criterion(logits, targets), logits

    def use_class_weights(self, weights: list[float] | None) -> None:
        """Weigh the training loss's classes (task order; None: equally), kept in the hparams."""
        self.hparams["class_weights"] = None if weights is None else [float(w) for w in weights]
        self.loss_weights = None if weights is None else torch.tensor(weights, device=self.device)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Class probabilities of `logits`, at the checkpoint's temperature (`calibration`)."""
        return calibrated_probabilities(logits, self.calibration.temperature)

    def on_train_epoch_start(self) -> None:
        # Dropout's draws by seed, epoch and rank: a resumed run draws what an uninterrupted one
        # does (Lightning does not restore the global random state).
        torch.manual_seed(
            epoch_seed(self.hparams.seed, self.current_epoch, self.global_rank, "dropout")
        )

    def training_step(self, batch: tuple, batch_idx: int) -> torch.Tensor:
        logits = self(batch[0])
        loss = nn.functional.cross_entropy(logits, batch[1], weight=self.loss_weights)
        self.train_metrics.update(logits, batch[1])
        self.log(
            "train/loss",
            loss,
            on_step=False,
            on_epoch=True,
            sync_dist=True,
            batch_size=len(batch[1]),
        )
        self.log_dict(self.train_metrics, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: tuple, batch_idx: int, dataloader_idx: int = 0) -> None:
        loss, logits = self._step(batch)
        if dataloader_idx == 1:  # the test split, each epoch: reported, never used to choose
            self.test_each_epoch.update(logits, batch[1])
            return
        self.val_metrics.update(logits, batch[1])
        # A metric, not a per-rank mean: ranks may hold one batch more or less of the images.
        self.val_loss.update(loss, weight=len(batch[1]))
        self.log("val/loss", self.val_loss, on_epoch=True, add_dataloader_idx=False)
        self.log_dict(self.val_metrics, on_epoch=True, prog_bar=True, add_dataloader_idx=False)

    def on_validation_epoch_end(self) -> None:
        """With `report_test_selected`: keep this epoch's test accuracy (as the study chose)."""
        loaders = self.trainer.val_dataloaders
        if not isinstance(loaders, (list, tuple)) or len(loaders) < 2:
            return
        accuracy = self.test_each_epoch.compute().item()  # on every rank: it all-gathers
        self.test_each_epoch.reset()
        if self.trainer.sanity_checking:
            return
        self.log("test_each_epoch/acc", accuracy, add_dataloader_idx=False, rank_zero_only=True)
        self.test_accuracy_by_epoch[self.current_epoch] = accuracy

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["test_accuracy_by_epoch"] = dict(self.test_accuracy_by_epoch)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # A resumed run weighs its classes as it did before, whatever it is now told.
        saved = checkpoint.get("hyper_parameters", {}).get("class_weights")
        if saved != self.hparams.get("class_weights"):
            log.warning(
                "Resuming with the run's class weights %s, not %s",
                saved,
                self.hparams.get("class_weights"),
            )
        self.use_class_weights(saved)
        self.test_accuracy_by_epoch = {
            int(epoch): float(value)
            for epoch, value in checkpoint.get("test_accuracy_by_epoch", {}).items()
        }

    def on_test_epoch_start(self) -> None:
        self.test_results = {}
        self.test_logits: list[torch.Tensor] = []
        self.test_targets: list[torch.Tensor] = []

    def test_step(self, batch: tuple, batch_idx: int) -> None:
        loss, logits = self._step(batch)
        targets = batch[1]
        self.test_metrics.update(logits, targets)
        self.test_per_class.update(logits, targets)
        self.test_loss.update(loss, weight=len(targets))
        self.test_logits.append(logits.float().cpu())
        self.test_targets.append(targets.cpu())

    def on_test_epoch_end(self) -> None:
        """Compute every test figure once, log the scalars, keep all of it in `test_results`."""
        results = {key: value.item() for key, value in self.test_metrics.compute().items()}
        results["test/loss"] = self.test_loss.compute().item()
        per_class = self.test_per_class.compute()
        support = per_class["confusion"].sum(dim=1)
        for index, name in enumerate(self.task.classes):
            for metric in ("precision", "recall", "f1"):
                results[f"test/{metric}/{name}"] = per_class[metric][index].item()
            results[f"test/support/{name}"] = int(support[index].item())
        self.log_dict({k: v for k, v in results.items() if "/support/" not in k})
        results["confusion_matrix"] = per_class["confusion"].tolist()
        self.test_results = results
        self.test_metrics.reset()
        self.test_per_class.reset()
        self.test_loss.reset()

    def predict_step(self, batch: tuple, batch_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and targets of a labelled batch (the validation split, to calibrate on)."""
        return self(batch[0]).float().cpu(), batch[1].cpu()

    def configure_optimizers(self) -> torch.optim.Optimizer | dict[str, Any]:
        """The configured optimizer and, when one is configured, its schedule (once an epoch)."""
        optimizer = make_optimizer(self.hparams.optimizer, self.parameters())
        if not self.hparams.get("scheduler"):
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": make_scheduler(self.hparams.scheduler, optimizer),
        }


def read_checkpoint(
    path: str | Path, map_location: str = "cpu", mmap: bool = False
) -> dict[str, Any]:
    """A checkpoint file's contents, loaded with `weights_only=True`; a clear error otherwise.

    `weights_only=True` refuses any pickled object that could run code: it never runs.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"refused to load {path}: it holds objects other than plain data and tensors, "
            f"which could run code when loaded ({str(error).splitlines()[0]})"
        ) from error
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise CheckpointError(
            f"cannot read checkpoint {path}: truncated or not a checkpoint ({error})"
        ) from error


def load_classifier(
    path: str | Path, map_location: str = "cpu", calibrated: bool = True
) -> ArtworkClassifier:
    """Rebuild a trained classifier from its checkpoint alone, loading only plain data.

    Its probabilities use the checkpoint's temperature, or 1 when not `calibrated`.
    """
    path = Path(path)
    checkpoint = read_checkpoint(path, map_location)
    hyper_parameters = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    if not hyper_parameters or "task" not in hyper_parameters:
        raise CheckpointError(f"{path} is not a significance checkpoint (no task description)")
    hyper_parameters = dict(hyper_parameters)
    # The trained weights replace any pretrained ones: never download or read them here.
    hyper_parameters["model"] = {**hyper_parameters["model"], "pretrained": False}
    try:
        model = ArtworkClassifier(**hyper_parameters)
    except ValueError as error:  # torchvision: "Unknown model ..."
        raise CheckpointError(
            f"{path} was made with the architecture {hyper_parameters['model'].get('name')!r}, "
            f"which this installation cannot build ({error})"
        ) from error
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except (RuntimeError, KeyError) as error:
        classes = list(hyper_parameters["task"].get("classes") or [])
        raise CheckpointError(
            f"{path}: its weights do not fit its description (task "
            f"{hyper_parameters['task'].get('id')!r}, {len(classes)} classes {classes}, "
            f"model {hyper_parameters['model'].get('name')!r}): "
            f"{str(error).splitlines()[-1].strip() or error}"
        ) from error
    calibration = Calibration.from_checkpoint(checkpoint)
    model.calibration = calibration if calibrated else calibration.turned_off()
    return model.eval()
