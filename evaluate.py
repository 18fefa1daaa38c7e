"""Evaluate a checkpoint on one device: `python evaluate.py ckpt=path/to/best.ckpt`.

Or the two-stage pipeline end to end: `python evaluate.py pipeline=<config>`.
"""

import os
from pathlib import Path

import hydra
from omegaconf import DictConfig

os.environ.setdefault("SIGNIFICANCE_ROOT", str(Path(__file__).resolve().parent))

from significance.config import register_resolvers, to_plain
from significance.evaluation import evaluate_checkpoint
from significance.pipeline.evaluation import evaluate_pipeline
from significance.pipeline.loading import spec_from_config
from significance.validation import ConfigurationError, run_entry_point

register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    if cfg.get("pipeline") is not None:
        evaluate_pipeline(
            spec_from_config(to_plain(cfg.pipeline)),
            cfg.paths.output_dir,
            data=to_plain(cfg.data),
            batch_size=cfg.batch_size,
            num_workers=cfg.num_workers,
            device=cfg.accelerator,
            cache_file=cfg.cache_file,
            exclude_seen=cfg.exclude_seen,
        )
        return
    if cfg.ckpt is None:
        raise ConfigurationError("evaluate.py needs ckpt=<checkpoint> or pipeline=<config>")
    evaluate_checkpoint(
        cfg.ckpt,
        cfg.paths.output_dir,
        data=to_plain(cfg.data),
        split_file=cfg.split_file,
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        accelerator=cfg.accelerator,
        cache_dir=cfg.cache_dir,
        cache_file=cfg.cache_file,
        exclude_seen=cfg.exclude_seen,
    )


if __name__ == "__main__":
    run_entry_point(main)
