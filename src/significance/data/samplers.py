"""The training samplers: an order set by seed and epoch, split across the DDP ranks.

Training sets `use_distributed_sampler=False`: these are the samplers Lightning would otherwise
replace, seeded so that a resumed epoch draws what an uninterrupted run draws.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator, Sequence

import torch
from lightning.fabric.utilities.distributed import DistributedSamplerWrapper
from torch.utils.data import Dataset, DistributedSampler, WeightedRandomSampler


def epoch_seed(seed: int, epoch: int, rank: int, stream: str = "augment") -> int:
    """The seed of one random stream (`augment`, `dropout`) in one epoch on one rank."""
    digest = hashlib.sha256(f"{seed}|{epoch}|{rank}|{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class EpochShuffle(DistributedSampler):
    """DistributedSampler shuffled by seed and the trainer's current epoch.

    Lightning's `set_epoch` passes its count of processed epochs, which a run resumed from a
    checkpoint saved at the end of validation restores one short: the resumed epoch would
    repeat the previous epoch's order.
    """

    def __init__(self, dataset: Dataset, world_size: int, rank: int, seed: int, trainer) -> None:
        super().__init__(dataset, world_size, rank, shuffle=True, seed=seed)
        self.trainer = trainer

    def __iter__(self) -> Iterator[int]:
        if self.trainer is not None:
            self.set_epoch(self.trainer.current_epoch)
        return super().__iter__()


class EpochDraws(WeightedRandomSampler):
    """`len(weights)` indices drawn with replacement by weight, fixed by seed and epoch alone."""

    def __init__(self, weights: Sequence[float], seed: int) -> None:
        super().__init__(weights, len(weights), replacement=True, generator=torch.Generator())
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Reseed for `epoch`: every rank draws the same list (no rank in the seed)."""
        self.generator.manual_seed(epoch_seed(self.seed, epoch, 0, "balanced_sampler"))


class BalancedSampler(DistributedSamplerWrapper):
    """Each class equally likely per draw (data.sampler=balanced), drawn with replacement.

    An epoch has as many draws as the shuffled sampler's. The draws of an epoch are one list,
    the same on every rank (seeded by seed and epoch); each rank takes every `world_size`-th
    place of it, so that ranks never draw the same part.
    """

    def __init__(
        self, labels: Sequence[int], world_size: int, rank: int, seed: int, trainer=None
    ) -> None:
        counts = Counter(labels)
        draws = EpochDraws([1.0 / counts[label] for label in labels], seed)
        # No second shuffle: the list is already random; the wrapper only deals it out.
        super().__init__(draws, num_replicas=world_size, rank=rank, shuffle=False)
        self.trainer = trainer

    def __iter__(self) -> Iterator[int]:
        if self.trainer is not None:  # the trainer's epoch, as EpochShuffle
            self.set_epoch(self.trainer.current_epoch)
        return super().__iter__()
