"""`loss.class_weights`: the training split's class weights handed to the model at setup."""

from __future__ import annotations

import logging
from typing import Any

import lightning as L

from significance.data.balance import class_weights

log = logging.getLogger(__name__)


class ClassWeightsFromSplit(L.Callback):
    """Weigh the model's training loss by `setting` (none, balanced or {class: weight}).

    At setup, once `split.csv` exists and every rank has read it: the weights come from the
    training split and go into the model's hyperparameters, hence into its checkpoints.
    """

    def __init__(self, setting: Any) -> None:
        self.setting = setting

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        labels = [sample.label for sample in trainer.datamodule.datasets["train"].samples]
        classes = pl_module.task.classes
        weights = class_weights(self.setting, classes, labels)
        pl_module.use_class_weights(weights)
        if weights is not None:
            named = zip(classes, weights, strict=True)
            log.info(
                "Training loss weights (loss.class_weights=%s): %s",
                self.setting,
                ", ".join(f"{name} {weight:.3g}" for name, weight in named),
            )
