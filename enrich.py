"""The catalogue loop: `python enrich.py data.root=... pipeline.from_sweep=...` fills the empty
cells of a collection's table for review; `python enrich.py mode=merge review=<file>` merges the
reviewed labels back."""

from omegaconf import DictConfig

from significance.config import to_plain
from significance.entry import hydra_entry_point


@hydra_entry_point("enrich")
def main(cfg: DictConfig) -> None:
    if cfg.mode == "merge":
        from significance.catalogue.merge import merge_review

        merge_review(
            cfg.review.file,
            enrichment=cfg.enrichment,
            table_file=cfg.table_file,
            accept_above=cfg.accept_above,
            overwrite=list(cfg.overwrite),
            dry_run=cfg.dry_run,
            data=to_plain(cfg.data),
        )
        return
    from significance.catalogue.enrich import ReviewSettings, enrich
    from significance.pipeline.loading import spec_from_config

    enrich(
        spec_from_config(to_plain(cfg.pipeline)),
        cfg.paths.output_dir,
        data=to_plain(cfg.data),
        review=ReviewSettings(cfg.review.size, cfg.review.below, cfg.explain),
        disagreement_threshold=cfg.disagreement_threshold,
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        accelerator=cfg.accelerator,
        facts_file=cfg.facts_file,
    )


if __name__ == "__main__":
    main()
