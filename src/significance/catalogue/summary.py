"""`enrichment.md`: what an enrichment filled, what it queued for review, what it contradicts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from significance.catalogue.annotate import Annotator, Prediction
from significance.files import atomic_write
from significance.run_files import DISAGREEMENTS_FILE, ENRICHMENT_REPORT, REVIEW_FILE

SHOWN_DISAGREEMENTS = 20


def write_summary(
    output_dir: Path, record: dict[str, Any], annotator: Annotator, queue: Sequence[Prediction]
) -> None:
    """Write `enrichment.md` into the enrichment's folder."""
    lines = [
        "# Enrichment",
        "",
        f"Table `{record['table']}` ({record['rows']} rows), {record['created']}: "
        f"{record['images']} images read, {record['unreadable']} rows without a readable "
        "image (their reason in the `enrich_error` column).",
        "",
        "## Cells filled, by field and artwork type",
        "",
        "Only empty cells are filled; a value of the catalogue is never replaced.",
        "",
        "| field | artwork type | filled | to review |",
        "|---|---|---|---|",
    ]
    filled = Counter((p.field, p.artwork_type) for p in annotator.filled)
    queued = Counter((p.field, p.artwork_type) for p in queue)
    for (field, artwork_type), count in sorted(filled.items()):
        lines.append(f"| {field} | {artwork_type} | {count} | {queued[field, artwork_type]} |")
    lines += [
        f"| all | | {len(annotator.filled)} | {len(queue)} |",
        "",
        f"{len(queue)} predictions go to review (`{REVIEW_FILE}`, most uncertain first).",
        "",
        "## Disagreements",
        "",
        f"{len(annotator.disagreements)} catalogue values contradicted with a probability of at "
        f"least {record['disagreement_threshold']:g} by a model that never trained or validated "
        f"on the image (`{DISAGREEMENTS_FILE}`).",
        "",
    ]
    lines += disagreement_lines(annotator.disagreements)
    lines += ["## Models", "", "| task | checkpoint id | file |", "|---|---|---|"]
    for task_id, model in record["models"].items():
        lines.append(f"| {task_id} | `{model['id']}` | `{model['checkpoint']}` |")
    with atomic_write(output_dir / ENRICHMENT_REPORT) as handle:
        handle.write("\n".join(lines) + "\n")


def disagreement_lines(disagreements: Sequence[Prediction]) -> list[str]:
    """The most confident disagreements as a Markdown table."""
    if not disagreements:
        return []
    ordered = sorted(disagreements, key=lambda p: -p.probability)[:SHOWN_DISAGREEMENTS]
    lines = [
        "| line | path | field | catalogue | model says | probability |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {p.line} | {p.path} | {p.field} | {p.catalogue} | {p.predicted} | {p.probability:.3f} |"
        for p in ordered
    ]
    return [*lines, ""]
