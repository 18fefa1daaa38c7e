"""`review.html`: the review queue as one self-contained page, thumbnails in a folder beside it.

No server, no network: the queue is embedded in the page as JSON, the script and style are
inline (`assets/review.js`, `assets/review.css`), images are relative files. Decisions stay in
the browser's local storage until the page saves them as a `review.csv` download.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from significance.catalogue.review import REVIEW_COLUMNS, prediction_row
from significance.data.images import load_image
from significance.errors import UnreadableImageError
from significance.files import atomic_write
from significance.run_files import ENRICHMENT_FILE, REVIEW_PAGE
from significance.tasks import slugify

if TYPE_CHECKING:
    from significance.catalogue.annotate import Annotator, Prediction
    from significance.pipeline.loading import Pipeline

THUMBNAILS = "thumbnails"
EXPLANATIONS = "explanations"
THUMBNAIL_SIZE = 256


def thumbnail_name(line: int) -> str:
    """The file name of a table line's thumbnail under `thumbnails/`."""
    return f"line-{line:06d}.jpg"


def write_review_page(
    output_dir: Path,
    pipeline: Pipeline,
    root: Path,
    queue: Sequence[Prediction],
    annotator: Annotator,
    explain: bool,
) -> None:
    """Write `review.html`, its thumbnails and (with `explain`) the queued images' heat maps."""
    lines = sorted({p.line for p in queue})
    paths = {p.line: p.path for p in queue}
    write_thumbnails(output_dir / THUMBNAILS, root, paths)
    if explain and lines:
        write_heat_maps(output_dir / EXPLANATIONS, pipeline, root, queue)
    items = [page_item(p, annotator, output_dir, explain) for p in queue]
    record = json.loads((output_dir / ENRICHMENT_FILE).read_text())
    page = render_page(items, f"{record['table_sha256']}:{record['created']}")
    with atomic_write(output_dir / REVIEW_PAGE, encoding="utf-8") as handle:
        handle.write(page)


def write_thumbnails(folder: Path, root: Path, paths: dict[int, str]) -> None:
    """A JPEG of at most `THUMBNAIL_SIZE` px a side per queued table line."""
    folder.mkdir(parents=True, exist_ok=True)
    for line, path in paths.items():
        try:
            image = load_image(root / path)
        except UnreadableImageError:
            continue  # it decoded for the enrichment; a file changed since shows no image
        image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
        image.save(folder / thumbnail_name(line), quality=85)


def write_heat_maps(
    folder: Path, pipeline: Pipeline, root: Path, queue: Sequence[Prediction]
) -> None:
    """Grad-CAM of stage 1 and of each queued field's model, per queued line (`explain_batch`)."""
    import torch

    from significance.pipeline.explain import explain_batch
    from significance.pipeline.inference import decode_size, decoded_batches

    by_line: dict[int, dict[str, Any]] = {}
    for prediction in queue:
        row = by_line.setdefault(prediction.line, {"path": prediction.path})
        row[pipeline.stage1.task.id] = "stage 1"
        row[prediction.task] = prediction.predicted
    lines = sorted(by_line)
    files = [root / by_line[line]["path"] for line in lines]
    for batch in decoded_batches(files, decode_size(pipeline), 16, 0):
        readable = [item for item in batch if item.pixels is not None]
        if readable:
            pixels = torch.stack([item.pixels for item in readable])
            rows = [by_line[lines[item.index]] for item in readable]
            names = [f"line-{lines[item.index]:06d}" for item in readable]
            explain_batch(pipeline, pixels, rows, names, folder)


def page_item(
    prediction: Prediction, annotator: Annotator, output_dir: Path, explain: bool
) -> dict[str, Any]:
    """What the page shows of one queued prediction, and the row it saves back."""
    stage1 = annotator.stage1.get(prediction.line - 2, ("", 0.0))
    heat_maps = {}
    if explain:
        folder = Path(EXPLANATIONS) / slugify(f"line-{prediction.line:06d}")
        for key, task_id in (
            ("stage1", annotator.pipeline.stage1.task.id),
            ("field", prediction.task),
        ):
            if (output_dir / folder / f"{slugify(task_id)}.png").is_file():
                heat_maps[key] = (folder / f"{slugify(task_id)}.png").as_posix()
    return {
        "row": prediction_row(prediction),
        "id": f"{prediction.line}:{prediction.field}",
        "classes": list(prediction.classes),
        "thumbnail": f"{THUMBNAILS}/{thumbnail_name(prediction.line)}",
        "stage1": {"predicted": stage1[0], "probability": round(stage1[1], 4)},
        "heat_maps": heat_maps,
    }


def render_page(items: list[dict[str, Any]], key: str) -> str:
    """The page: inline style and script, the queue as JSON (`</` escaped for the parser)."""
    assets = resources.files("significance.catalogue") / "assets"
    data = json.dumps({"items": items, "columns": REVIEW_COLUMNS, "key": key})
    return (
        (assets / "review.html")
        .read_text(encoding="utf-8")
        .replace("/*STYLE*/", (assets / "review.css").read_text(encoding="utf-8"))
        .replace("/*SCRIPT*/", (assets / "review.js").read_text(encoding="utf-8"))
        .replace("/*QUEUE*/", data.replace("</", "<\\/"))
    )
