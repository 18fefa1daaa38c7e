"""Choosing the checkpoint: the best validation accuracy, ties broken by validation loss."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint


class BestCheckpoint(ModelCheckpoint):
    """`ModelCheckpoint` (save_top_k=1) that breaks a tie on the monitored value by `tie_breaker`.

    Small validation sets reach val/acc 1.0 early; without a tie-breaker the first epoch that
    did is kept by accident, however much better later epochs fit. The epoch of the kept
    checkpoint is `best_epoch`, and both survive a resume (`state_dict`).
    """

    def __init__(self, *args: Any, tie_breaker: str = "val/loss", tie_mode: str = "min", **kwargs):
        super().__init__(*args, **kwargs)
        if tie_mode not in ("min", "max"):
            raise ValueError(f"tie_mode must be min or max, got {tie_mode!r}")
        self.tie_breaker = tie_breaker
        self.tie_mode = tie_mode
        self.best_tie_value: float | None = None
        self.best_epoch: int | None = None

    def check_monitor_top_k(self, trainer: L.Trainer, current: torch.Tensor | None = None) -> bool:
        if current is None or self.save_top_k != 1 or not self.best_k_models:
            return super().check_monitor_top_k(trainer, current)
        best = self.best_k_models[self.kth_best_model_path]
        if not torch.eq(current, best.to(current.device)):
            return super().check_monitor_top_k(trainer, current)
        tie = trainer.callback_metrics.get(self.tie_breaker)
        better = tie is not None and (
            self.best_tie_value is None
            or (tie < self.best_tie_value if self.tie_mode == "min" else tie > self.best_tie_value)
        )
        return trainer.strategy.reduce_boolean_decision(bool(better))

    def _update_best_and_save(
        self, current: torch.Tensor, trainer: L.Trainer, monitor_candidates: dict[str, Any]
    ) -> None:
        tie = monitor_candidates.get(self.tie_breaker)
        self.best_tie_value = float(tie) if tie is not None else None
        self.best_epoch = int(monitor_candidates["epoch"])
        super()._update_best_and_save(current, trainer, monitor_candidates)

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "best_tie_value": self.best_tie_value,
            "best_epoch": self.best_epoch,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.best_tie_value = state_dict.get("best_tie_value")
        self.best_epoch = state_dict.get("best_epoch")
