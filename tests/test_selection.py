"""The best checkpoint: highest val/acc, a tie broken by the lower val/loss, its epoch kept."""

from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from significance.training.selection import BestCheckpoint

# val/acc and val/loss per epoch: 1.0 is reached in epoch 1; epoch 2 fits it better.
ACCURACY = [0.5, 1.0, 1.0, 1.0]
LOSS = [1.0, 0.5, 0.3, 0.4]


class Scripted(L.LightningModule):
    """Logs the scripted validation figures of each epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).sum()

    def validation_step(self, batch, batch_idx):
        epoch = self.current_epoch
        self.log("val/acc", ACCURACY[epoch])
        self.log("val/loss", LOSS[epoch])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def _fit(tmp_path: Path, epochs: int, resume: str | None = None) -> BestCheckpoint:
    data = DataLoader(TensorDataset(torch.zeros(4, 2)), batch_size=2)
    best = BestCheckpoint(dirpath=tmp_path, filename="best", monitor="val/acc", mode="max")
    last = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, filename="last")
    trainer = L.Trainer(
        max_epochs=epochs,
        callbacks=[best, last],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(Scripted(), data, data, ckpt_path=resume)
    return best


def test_a_tie_on_val_acc_is_broken_by_the_lower_val_loss(tmp_path: Path):
    best = _fit(tmp_path, epochs=4)
    assert best.best_epoch == 2 and best.best_tie_value == pytest.approx(0.3)
    assert torch.load(best.best_model_path, weights_only=True)["epoch"] == 2


def test_the_choice_survives_a_resume(tmp_path: Path):
    _fit(tmp_path, epochs=3)
    best = _fit(tmp_path, epochs=4, resume=str(tmp_path / "last.ckpt"))
    assert best.best_epoch == 2 and best.best_tie_value == pytest.approx(0.3)
