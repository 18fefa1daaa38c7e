"""Train one task, or sweep tasks with -m: `python train.py -m task=coins/period,icons/location`."""

import os
from pathlib import Path

import hydra
from omegaconf import DictConfig

os.environ.setdefault("SIGNIFICANCE_ROOT", str(Path(__file__).resolve().parent))

from significance.config import register_resolvers
from significance.training import train
from significance.validation import run_entry_point

register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    run_entry_point(main)
