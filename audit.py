"""Audit a collection before training: `python audit.py data.root=... [--strict]`."""

import sys

from omegaconf import DictConfig

from significance.entry import hydra_entry_point


@hydra_entry_point("audit")
def main(cfg: DictConfig) -> None:
    from significance.audit_command import run_audit

    # An exit code Hydra does not swallow: SystemExit passes through its error handling.
    sys.exit(run_audit(cfg))


if __name__ == "__main__":
    main()
