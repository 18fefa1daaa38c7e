"""The fold models of one task (a cross-validation sweep) used together as one classifier."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from significance.errors import CheckpointError
from significance.models.module import ArtworkClassifier


class FoldEnsemble(nn.Module):
    """Several classifiers of one task whose probabilities are averaged (by the pipeline's
    `probabilities`, which scores each member as it scores a lone model).

    Members must agree on the task, its class order and the preprocessing, so that one
    decoded batch and one column per class serve them all.
    """

    def __init__(self, members: Sequence[ArtworkClassifier], names: Sequence[str] = ()) -> None:
        super().__init__()
        if not members:
            raise CheckpointError("an ensemble needs at least one model")
        first, names = members[0], list(names) or [str(i) for i in range(len(members))]
        for member, name in zip(members[1:], names[1:], strict=True):
            if member.task != first.task or member.preprocessing != first.preprocessing:
                raise CheckpointError(
                    f"{name} does not fit the ensemble of {names[0]}: task {member.task.id} "
                    f"{list(member.task.classes)} vs {first.task.id} {list(first.task.classes)}"
                    ", or another preprocessing"
                )
        self.members = nn.ModuleList(members)
        self.task = first.task
        self.preprocessing = first.preprocessing

    @property
    def hparams(self) -> Any:
        """The first member's hyperparameters (the collection it was trained on among them)."""
        return self.members[0].hparams

    def __len__(self) -> int:
        return len(self.members)
