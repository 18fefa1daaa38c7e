"""Audit a collection before training: `python audit.py data.root=... [--strict]`."""

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

os.environ.setdefault("SIGNIFICANCE_ROOT", str(Path(__file__).resolve().parent))

from significance.config import register_resolvers
from significance.data.audit import run_audit

register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="audit")
def main(cfg: DictConfig) -> None:
    # An exit code Hydra does not swallow: SystemExit passes through its error handling.
    sys.exit(run_audit(cfg))


if __name__ == "__main__":
    # `--strict` is the usual spelling of a flag; Hydra itself only takes `strict=true`.
    sys.argv = [arg if arg != "--strict" else "strict=true" for arg in sys.argv]
    main()
