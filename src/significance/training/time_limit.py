"""Saving a SLURM job's full state as its time limit nears, for the requeued job to resume there.

submitit asks SLURM to signal every task `signal_delay_s` before the time limit (USR2, or
`$SUBMITIT_PREEMPT_SIGNAL`); its own handler requeues the job at once, and the requeued job
resumes from `checkpoints/last.ckpt`, which the last-checkpoint callback writes only every 10
minutes. In a SLURM job we take that signal over (`take_over_time_limit_signal`, as soon as the
job starts): the handler only notes it. At the end of the training batch under way the ranks
agree that it came (it reaches them at different moments), every rank takes part in saving
`last.ckpt` (`CheckpointOnTimeLimit`), and the signal goes on to the handler it replaced:
submitit's requeues the job and ends rank 0; the other ranks wait for that and end too. A
signal that comes after the last batch goes on at the end of `fit`. Without a handler to hand
it to (a plain `sbatch --signal`), the job saves and ends, to be resubmitted by hand.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

log = logging.getLogger(__name__)

# submitit's own default and setting for the signal that precedes the time limit.
SIGNAL_VARIABLE = "SUBMITIT_PREEMPT_SIGNAL"
DEFAULT_SIGNAL = "USR2"


class _TakenOver:
    """This process's hold on the signal: the handler it replaced, and whether it came."""

    previous: Any = None
    held = False
    received = False


def time_limit_signal() -> signal.Signals:
    """The signal SLURM sends ahead of the time limit: submitit's (USR2 unless set otherwise)."""
    return signal.Signals["SIG" + os.environ.get(SIGNAL_VARIABLE, DEFAULT_SIGNAL)]


def take_over_time_limit_signal() -> bool:
    """In a SLURM job, note the time-limit signal instead of acting on it; True if now held."""
    in_main_thread = threading.current_thread() is threading.main_thread()
    if _TakenOver.held or "SLURM_JOB_ID" not in os.environ or not in_main_thread:
        return _TakenOver.held
    _TakenOver.previous = signal.signal(time_limit_signal(), _note)
    _TakenOver.held, _TakenOver.received = True, False
    return True


def give_back_time_limit_signal() -> bool:
    """The signal to the handler it was taken from; True if it had come (and is now re-sent)."""
    if not _TakenOver.held:
        return False
    signal.signal(time_limit_signal(), _TakenOver.previous)
    _TakenOver.held = False
    if _TakenOver.received:
        _TakenOver.received = False
        signal.raise_signal(time_limit_signal())
        return True
    return False


def _note(signum: int, frame: Any) -> None:
    _TakenOver.received = True  # no logging here: it may interrupt a write to the same stream


class CheckpointOnTimeLimit(Callback):
    """On the time-limit signal, save `path` (the run's last.ckpt) and hand the signal on."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            take_over_time_limit_signal()

    def on_train_batch_end(self, trainer: L.Trainer, *arguments: Any) -> None:
        # Here only: at the end of an epoch Lightning's progress bar syncs the epoch's metrics
        # on rank 0 alone, ahead of the others, and a collective of ours between would mismatch.
        # A signal during validation is acted on after the next epoch's first batch.
        self._save_if_signalled(trainer)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """After `fit` the signal goes back; one that came after the last batch goes on now.

        Requeued then, the job resumes from the last periodic save of last.ckpt.
        """
        if stage == "fit":
            give_back_time_limit_signal()

    def on_exception(self, trainer: L.Trainer, pl_module: Any, exception: BaseException) -> None:
        if _TakenOver.held:  # fit failed: the signal is the replaced handler's again
            _TakenOver.received = False
            give_back_time_limit_signal()

    def _save_if_signalled(self, trainer: L.Trainer) -> None:
        if not _TakenOver.held:
            return
        # Every rank must take this decision, and the same one (a collective under DDP).
        if not trainer.strategy.reduce_boolean_decision(_TakenOver.received, all=False):
            return
        trainer.save_checkpoint(self.path)  # every rank: the strategy writes on rank 0
        name = time_limit_signal().name
        log.info("Saved %s on %s (epoch %d)", self.path, name, trainer.current_epoch)
        _TakenOver.received = False
        give_back_time_limit_signal()
        self._hand_on(trainer)

    def _hand_on(self, trainer: L.Trainer) -> None:
        """The signal to the handler it was taken from, then the end of this process."""
        previous, outcome = _TakenOver.previous, None
        try:
            if callable(previous):
                previous(time_limit_signal(), None)  # submitit: rank 0 requeues and exits
            elif previous == signal.SIG_IGN:
                return  # nobody wants to hear of it: training goes on
        except BaseException as error:  # submitit's exit, or "timed-out too many times"
            outcome = error
        if trainer.world_size > 1:  # no rank ends before rank 0 has requeued the job
            trainer.strategy.barrier("time limit handed on")
        if outcome is not None:
            raise outcome
        raise SystemExit(f"stopped on {time_limit_signal().name} ahead of the time limit")
