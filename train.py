"""Train one task, or sweep tasks with -m: `python train.py -m task=coins/period,icons/location`."""

from omegaconf import DictConfig

from significance.entry import hydra_entry_point


@hydra_entry_point("train")
def main(cfg: DictConfig) -> None:
    from significance.training.train import train  # torch and Lightning: once the config is valid

    train(cfg)


if __name__ == "__main__":
    main()
