"""The two-stage pipeline on new images: `python predict.py input=photos/ pipeline=<config>`."""

from omegaconf import DictConfig

from significance.config import to_plain
from significance.entry import hydra_entry_point


@hydra_entry_point("predict")
def main(cfg: DictConfig) -> None:
    from significance.models.calibration import CalibrationSettings
    from significance.pipeline.loading import spec_from_config
    from significance.pipeline.predict import predict

    predict(
        cfg.input,
        spec_from_config(to_plain(cfg.pipeline)),
        cfg.paths.output_dir,
        stage1_threshold=cfg.stage1.threshold,
        stage2_threshold=cfg.stage2.threshold,
        explain=cfg.explain,
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        accelerator=cfg.accelerator,
        calibrated=CalibrationSettings.from_config(to_plain(cfg.calibration)).enabled,
    )


if __name__ == "__main__":
    main()
