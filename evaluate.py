"""Evaluate a checkpoint on one device: `python evaluate.py ckpt=path/to/best.ckpt`.

Or the two-stage pipeline end to end: `python evaluate.py pipeline=<config>`.
"""

from omegaconf import DictConfig

from significance.config import to_plain
from significance.entry import hydra_entry_point
from significance.errors import ConfigurationError


@hydra_entry_point("evaluate")
def main(cfg: DictConfig) -> None:
    if cfg.get("pipeline") is None and cfg.ckpt is None:
        raise ConfigurationError("evaluate.py needs ckpt=<checkpoint> or pipeline=<config>")
    from significance.models.calibration import CalibrationSettings

    calibrated = CalibrationSettings.from_config(to_plain(cfg.calibration)).enabled
    if cfg.get("pipeline") is not None:
        from significance.pipeline.end_to_end import evaluate_pipeline
        from significance.pipeline.loading import spec_from_config

        evaluate_pipeline(
            spec_from_config(to_plain(cfg.pipeline)),
            cfg.paths.output_dir,
            data=to_plain(cfg.data),
            batch_size=cfg.batch_size,
            num_workers=cfg.num_workers,
            accelerator=cfg.accelerator,
            facts_file=cfg.facts_file,
            exclude_seen=cfg.exclude_seen,
            calibrated=calibrated,
            target_precision=cfg.target_precision,
        )
        return
    from significance.checkpoint_evaluation import evaluate_checkpoint

    evaluate_checkpoint(
        cfg.ckpt,
        cfg.paths.output_dir,
        data=to_plain(cfg.data),
        split_file=cfg.split_file,
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        accelerator=cfg.accelerator,
        cache_dir=cfg.cache_dir,
        facts_file=cfg.facts_file,
        exclude_seen=cfg.exclude_seen,
        calibrated=calibrated,
    )


if __name__ == "__main__":
    main()
