"""The optimizer and learning-rate schedule of a model, from their Hydra configs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

# Release 0.1 stored Adam's arguments alone ({lr, amsgrad, weight_decay, fused}, no _target_).
RELEASE_0_1_OPTIMIZER = "torch.optim.Adam"


def optimizer_config(config: dict[str, Any]) -> dict[str, Any]:
    """The optimizer's Hydra config; a release 0.1 checkpoint's (no `_target_`) is Adam's."""
    if "_target_" in config:
        return dict(config)
    return {"_target_": RELEASE_0_1_OPTIMIZER, **config}


def make_optimizer(config: dict[str, Any], params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """The optimizer of `config` (a `conf/optimizer/` config or a release 0.1 one) over `params`."""
    from hydra.utils import instantiate  # here: loading a checkpoint needs no Hydra

    # _convert_: plain lists, not OmegaConf's, in its state: the checkpoint loads weights_only.
    return instantiate(optimizer_config(config), params=params, _partial_=False, _convert_="all")


def make_scheduler(config: dict[str, Any], optimizer: torch.optim.Optimizer) -> Any:
    """The learning-rate schedule of `config` (a `conf/scheduler/` config) for `optimizer`."""
    from hydra.utils import instantiate

    # _convert_: plain lists (milestones...) in its state, as in make_optimizer.
    return instantiate(config, optimizer=optimizer, _partial_=False, _convert_="all")
