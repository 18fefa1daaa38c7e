"""Train one task, or sweep tasks with -m: `python train.py -m task=coins/period,icons/location`."""

from omegaconf import DictConfig

from significance.entry import hydra_entry_point


@hydra_entry_point("train")
def main(cfg: DictConfig) -> None:
    from significance.training.preflight import check_values

    check_values(cfg)  # a bad value is answered before torch and Lightning load
    from significance.training.train import train

    train(cfg)


if __name__ == "__main__":
    main()
