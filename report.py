"""Write a finished sweep's results.md: `python report.py sweep_dir=outputs/sweeps/<time>`."""

import hydra
from omegaconf import DictConfig

from significance.reporting.sweep import write_sweep_report


@hydra.main(version_base="1.3", config_path="conf", config_name="report")
def main(cfg: DictConfig) -> None:
    print(write_sweep_report(cfg.sweep_dir))


if __name__ == "__main__":
    main()
