"""The two-stage pipeline on new images: `python predict.py input=photos/ pipeline=<config>`."""

import os
from pathlib import Path

import hydra
from omegaconf import DictConfig

os.environ.setdefault("SIGNIFICANCE_ROOT", str(Path(__file__).resolve().parent))

from significance.config import register_resolvers, to_plain
from significance.pipeline.loading import spec_from_config
from significance.pipeline.predict import predict
from significance.validation import run_entry_point

register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    predict(
        cfg.input,
        spec_from_config(to_plain(cfg.pipeline)),
        cfg.paths.output_dir,
        stage1_threshold=cfg.stage1.threshold,
        stage2_threshold=cfg.stage2.threshold,
        explain=cfg.explain,
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        device=cfg.device,
    )


if __name__ == "__main__":
    run_entry_point(main)
