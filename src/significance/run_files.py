"""The names of a run's and a sweep's files, and reading a finished job's result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# A run's (or sweep job's) folder.
RESULT_FILE = "result.json"
SPLIT_FILE = "split.csv"
SKIPPED_FILE = "skipped.csv"
WANDB_ID_FILE = "wandb_id.txt"
SETTINGS_FILE = "settings.json"  # the settings its figures depend on (significance.run_settings)
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"
METRICS_LOG = Path("logs") / "metrics.csv"
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"
# An evaluation's folder (`test/` of a run) beside its report.md.
PER_CLASS_FILE = "per_class.csv"
PREDICTIONS_FILE = "predictions.csv"
CONFUSION_MATRIX_FILE = "confusion_matrix.png"
RELIABILITY_FILE = "reliability.png"

# A sweep's folder: a row per job in summary.csv, the tables in results.md.
SUMMARY_FILE = "summary.csv"
RESULTS_FILE = "results.md"
# A hyperparameter search's sweep folder: what it optimizes (significance.search).
SEARCH_FILE = "search.json"
# A cross-validation sweep's: each image's probabilities from the fold model that never saw it.
OOF_PREDICTIONS_FILE = "oof_predictions.csv"
# `status` values of summary.csv for jobs whose results stand: "skipped" is a job that finished
# in an earlier run of the same sweep folder (its figures are carried over).
FINISHED_STATUSES = ("ok", "skipped")


def finished_result(job_dir: Path) -> dict[str, Any] | None:
    """The job's `result.json` when it says the job finished ("status": "ok"), else None."""
    try:
        result = json.loads((job_dir / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) and result.get("status") == "ok" else None


# An enrichment's folder (`enrich.py`): the catalogue enriched, what to review, how it was made.
ENRICHED_TABLE = "annotations.csv"
PREDICTIONS_TABLE = "predictions.csv"  # every prediction that filled an empty cell
DISAGREEMENTS_FILE = "disagreements.csv"
REVIEW_FILE = "review.csv"
REVIEW_PAGE = "review.html"
LABEL_STUDIO_FILE = "review.labelstudio.json"
LABEL_STUDIO_CONFIG = "review.labelstudio.xml"
ENRICHMENT_REPORT = "enrichment.md"
ENRICHMENT_FILE = "enrichment.json"  # the table's path and content hash, the models used
TABLE_SNAPSHOT = "catalogue.csv"  # the table as the enrichment (or its last merge) left it
MERGES_FILE = "merges.json"
