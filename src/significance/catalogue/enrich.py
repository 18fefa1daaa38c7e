"""`enrich.py`: the pipeline fills the empty cells of a collection's annotations table.

Writes, into the enrichment's folder: the table with a `<field>_predicted`,
`<field>_probability` pair per field, predictions.csv, disagreements.csv, review.csv (with its
page, review.html, and Label Studio tasks), enrichment.md, and enrichment.json with the
table's content hash, so that a merge refuses a table changed since.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm import tqdm

from significance.catalogue.annotate import Annotator
from significance.catalogue.labelstudio import write_label_studio
from significance.catalogue.review import (
    DISAGREEMENT_COLUMNS,
    PREDICTION_COLUMNS,
    REVIEW_COLUMNS,
    review_queue,
    write_predictions,
)
from significance.catalogue.review_page import write_review_page
from significance.catalogue.summary import write_summary
from significance.catalogue.table import content_sha256, read_table, row_path, write_table
from significance.files import write_json
from significance.pipeline.end_to_end import collection_of
from significance.pipeline.inference import decode_size, decoded_batches
from significance.pipeline.loading import Pipeline, PipelineSpec, load_pipeline
from significance.run_files import (
    DISAGREEMENTS_FILE,
    ENRICHED_TABLE,
    ENRICHMENT_FILE,
    PREDICTIONS_TABLE,
    REVIEW_FILE,
    TABLE_SNAPSHOT,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReviewSettings:
    """How long the review queue is (`size` rows, or those under the probability `below`)."""

    size: int | None = 50
    below: float | None = None
    explain: bool = False  # Grad-CAM heat maps of the queued images, shown on the page


def enrich(
    spec: PipelineSpec | Pipeline,
    output_dir: str | Path,
    data: dict[str, Any] | None = None,
    review: ReviewSettings = ReviewSettings(),
    disagreement_threshold: float = 0.9,
    batch_size: int = 64,
    num_workers: int | str = "auto",
    accelerator: str = "auto",
    facts_file: str | Path | None = None,
) -> dict[str, Any]:
    """Enrich the annotations table of `data` (default: the collection stage 1 trained on)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    pipeline = spec if isinstance(spec, Pipeline) else load_pipeline(spec, accelerator)
    collection = collection_of(pipeline, data, facts_file)
    collection.ensure()
    table_file = collection.root / collection.annotations_file
    table = read_table(table_file)
    # The table as read, and its hash: a merge refuses a table changed since (and names rows).
    table_sha256 = content_sha256(table_file)
    shutil.copyfile(table_file, output_dir / TABLE_SNAPSHOT)
    annotator = Annotator(pipeline, table, collection.root, disagreement_threshold)
    seconds = annotate_rows(annotator, pipeline, collection.root, batch_size, num_workers)
    write_table(output_dir / ENRICHED_TABLE, annotator.enriched())
    write_predictions(output_dir / PREDICTIONS_TABLE, annotator.filled, PREDICTION_COLUMNS)
    write_predictions(
        output_dir / DISAGREEMENTS_FILE, annotator.disagreements, DISAGREEMENT_COLUMNS
    )
    queue = review_queue(annotator.filled, review.size, review.below)
    write_predictions(output_dir / REVIEW_FILE, queue, REVIEW_COLUMNS)
    record = enrichment_record(table_file, table_sha256, pipeline, annotator, len(queue))
    write_json(output_dir / ENRICHMENT_FILE, record)
    write_review_page(output_dir, pipeline, collection.root, queue, annotator, review.explain)
    write_label_studio(output_dir, queue)
    write_summary(output_dir, record, annotator, queue)
    log.info(
        "Enriched %d rows (%d images, %d unreadable) in %.1f s: %.1f images/s; %d cells "
        "filled, %d to review, %d disagreements; written to %s",
        len(table.rows),
        annotator.images,
        len(annotator.errors),
        seconds,
        annotator.images / max(seconds, 1e-9),
        len(annotator.filled),
        len(queue),
        len(annotator.disagreements),
        output_dir,
    )
    return record


def annotate_rows(
    annotator: Annotator, pipeline: Pipeline, root: Path, batch_size: int, num_workers: int | str
) -> float:
    """Run the pipeline over every row with a path, with a progress bar; the seconds it took."""
    rows = annotator.table.rows
    indices = [i for i, row in enumerate(rows) if row_path(row)]
    for index in set(range(len(rows))) - set(indices):
        annotator.errors[index] = "no path in this row"
    paths = [root / row_path(rows[i]) for i in indices]
    started = time.perf_counter()
    with tqdm(total=len(paths), desc="enrich", unit="img") as progress:
        for batch in decoded_batches(paths, decode_size(pipeline), batch_size, num_workers):
            annotator.add(batch, indices)
            progress.update(len(batch))
    return time.perf_counter() - started


def enrichment_record(
    table_file: Path, table_sha256: str, pipeline: Pipeline, annotator: Annotator, queued: int
) -> dict[str, Any]:
    """`enrichment.json`: the table read and its hash, the models, what was found."""
    models = {
        task_id: {"checkpoint": str(Path(pipeline.checkpoints[task_id]).resolve()), "id": model_id}
        for task_id, model_id in annotator.ids.items()
    }
    return {
        "table": str(table_file.resolve()),
        "table_sha256": table_sha256,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "models": models,
        "rows": len(annotator.table.rows),
        "images": annotator.images,
        "unreadable": len(annotator.errors),
        "filled": len(annotator.filled),
        "review": queued,
        "disagreements": len(annotator.disagreements),
        "disagreement_threshold": annotator.threshold,
    }
