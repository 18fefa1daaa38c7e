"""Write a finished sweep's results.md: `python report.py sweep_dir=outputs/sweeps/<time>`."""

from omegaconf import DictConfig

from significance.entry import hydra_entry_point


@hydra_entry_point("report")
def main(cfg: DictConfig) -> None:
    from significance.reporting.sweep import write_sweep_report

    print(write_sweep_report(cfg.sweep_dir))


if __name__ == "__main__":
    main()
