"""The catalogue loop: enrich a table with blanked cells, review, merge back, train on sources."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from catalogue_tables import blank_cells, copy_collection, differences, read_rows, write_rows
from conftest import CONF_DIR, Sweep, assert_ok, run_script

from significance.catalogue.annotate import Prediction
from significance.catalogue.enrich import ReviewSettings, enrich
from significance.catalogue.labelstudio import read_label_studio
from significance.catalogue.merge import merge_review
from significance.catalogue.review import read_review, review_queue
from significance.checkpoint_evaluation import images_seen_by
from significance.config import to_plain
from significance.data.collection import read_labels
from significance.data.images import file_sha256
from significance.data.run_split import CollectionSettings
from significance.errors import InputError
from significance.models.module import load_classifier
from significance.pipeline.loading import spec_from_sweep
from significance.reporting.checkpoint_report import git_commit
from significance.tasks import discover_tasks

UNREADABLE_LINE = 3  # its image replaced by bytes that are no image


@dataclass(frozen=True)
class Enriched:
    """A demo copy with blanked cells, and its enrichment."""

    collection: Path
    table: Path  # the blanked table, as the enrichment read it
    folder: Path  # the enrichment's folder
    blanked: set[tuple[int, str]]
    record: dict


@pytest.fixture(scope="module")
def enriched(all_tasks_sweep: Sweep, demo_dir: Path, tmp_path_factory) -> Enriched:
    """The demo with blanked cells and one unreadable image, enriched by the session's sweep."""
    collection = copy_collection(demo_dir, tmp_path_factory.mktemp("catalogue") / "museum")
    blanked = blank_cells(collection / "annotations.csv")
    _, rows = read_rows(collection / "annotations.csv")
    broken = collection / rows[UNREADABLE_LINE - 2]["path"]
    broken.unlink()  # a link to the demo's image: replaced, never written through
    broken.write_bytes(b"not an image")
    folder = collection.parent / "enrichment"
    record = enrich(
        spec_from_sweep(all_tasks_sweep.path),
        folder,
        data={"root": str(collection)},
        review=ReviewSettings(size=None),
        disagreement_threshold=0.0,  # the tiny model is never sure: every contradiction
        num_workers=0,
        accelerator="cpu",
    )
    return Enriched(collection, collection / "annotations.csv", folder, blanked, record)


def fresh_copy(enriched: Enriched, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the enrichment's folder and of the table it read, for one test to merge into."""
    folder = shutil.copytree(enriched.folder, tmp_path / "enrichment")
    table = tmp_path / "annotations.csv"
    shutil.copyfile(enriched.table, table)
    return folder, table


def filled_cells(enriched: Enriched) -> set[tuple[int, str]]:
    """(line, field) of every cell the enrichment predicted."""
    _, rows = read_rows(enriched.folder / "annotations.csv")
    return {
        (line, column.removesuffix("_predicted"))
        for line, row in enumerate(rows, start=2)
        for column, value in row.items()
        if column.endswith("_predicted") and value
    }


def test_enrich_keeps_every_row_and_value_and_fills_only_empty_cells(enriched: Enriched):
    columns, _ = read_rows(enriched.table)
    assert differences(enriched.table, enriched.folder / "annotations.csv", columns) == []
    _, rows = read_rows(enriched.table)
    filled = filled_cells(enriched)
    assert all(not rows[line - 2].get(field) for line, field in filled), "a human value filled"
    type_blanked = {line for line, field in enriched.blanked if field == "artwork_type"}
    # Rows that kept their type: exactly the blanked cells, less the unreadable image's.
    assert {c for c in filled if c[0] not in type_blanked} == {
        c for c in enriched.blanked if c[0] not in type_blanked and c[0] != UNREADABLE_LINE
    }
    assert {(line, "artwork_type") for line in type_blanked} <= filled


def test_enrich_names_its_models_and_routes_untyped_rows_by_stage_1(enriched: Enriched):
    _, rows = read_rows(enriched.folder / "annotations.csv")
    for line, field in filled_cells(enriched):
        row = rows[line - 2]
        route = row["artwork_type"] or row["artwork_type_predicted"]
        ids = row["model"].split()
        task = "artefact" if field == "artwork_type" else f"{route}/{field}"
        assert any(i.startswith(f"{task}:") for i in ids), (line, field, ids)
        assert 0 < float(row[f"{field}_probability"]) <= 1
    for task_id, model in enriched.record["models"].items():
        assert re.fullmatch(rf"{task_id}:[0-9a-f]{{12}}@\S+", model["id"]), model["id"]
    model = enriched.record["models"]["icons/location"]
    commit = load_classifier(model["checkpoint"]).hparams["commit"]  # training records it
    # The session's sweep ran this checkout (a file edited since would only add +dirty).
    assert commit.split("+")[0] == git_commit().split("+")[0]
    assert model["id"].split("@")[1].split("+")[0] == commit.split("+")[0][:12]


def test_an_unreadable_image_keeps_its_row_with_the_reason(enriched: Enriched):
    _, rows = read_rows(enriched.folder / "annotations.csv")
    assert rows[UNREADABLE_LINE - 2]["enrich_error"]
    assert sum(bool(row["enrich_error"]) for row in rows) == 1
    assert enriched.record["unreadable"] == 1


def test_disagreements_are_contradictions_on_images_the_model_never_saw(enriched: Enriched):
    _, rows = read_rows(enriched.folder / "disagreements.csv")
    assert rows, "the tiny model contradicts some catalogue values"
    rows = rows[:: max(1, len(rows) // 12)]  # a sample: hashing them all takes seconds
    checkpoints = {
        row["task"]: enriched.record["models"][row["task"]]["checkpoint"] for row in rows
    }
    seen = {task: images_seen_by(c, load_classifier(c)) for task, c in checkpoints.items()}
    for row in rows:
        assert row["predicted"] != row["catalogue"]
        assert file_sha256(enriched.collection / row["path"]) not in seen[row["task"]]


def test_review_csv_is_every_prediction_most_uncertain_first(enriched: Enriched):
    _, rows = read_rows(enriched.folder / "review.csv")
    assert len(rows) == len(filled_cells(enriched)) == enriched.record["filled"]
    keys = [(float(r["probability"]), float(r["margin"])) for r in rows]
    assert keys == sorted(keys)
    assert all(r["decision"] == r["corrected_label"] == "" for r in rows)
    page = (enriched.folder / "review.html").read_text()
    assert "http://" not in page and "https://" not in page  # nothing fetched from a network
    assert all((enriched.folder / "thumbnails").glob("*.jpg"))


def test_review_queue_length_by_size_or_probability():
    def prediction(probability: float, margin: float) -> Prediction:
        return Prediction(2, "a.jpg", "f", "t", "coins", "x", probability, margin, "m", ("x", "y"))

    made = [prediction(0.9, 0.8), prediction(0.5, 0.2), prediction(0.5, 0.1), prediction(0.7, 0.4)]
    assert [(p.probability, p.margin) for p in review_queue(made, 2, None)] == [
        (0.5, 0.1),
        (0.5, 0.2),
    ]
    assert [p.probability for p in review_queue(made, None, 0.8)] == [0.5, 0.5, 0.7]


def decide(review: Path, target: Path) -> list[dict[str, str]]:
    """Accept the first queued prediction, correct the second, reject the third."""
    columns, rows = read_rows(review)
    rows[0]["decision"] = "accept"
    other = next(c for c in rows[1]["classes"].split("|") if c != rows[1]["predicted"])
    rows[1]["decision"], rows[1]["corrected_label"] = "correct", other
    rows[2]["decision"] = "reject"
    write_rows(target, columns, rows)
    return rows[:3]


def test_merge_writes_reviewed_labels_with_sources_once(enriched: Enriched, tmp_path: Path):
    folder, table = fresh_copy(enriched, tmp_path)
    decided = decide(folder / "review.csv", tmp_path / "review.csv")
    original = table.read_bytes()
    assert merge_review(tmp_path / "review.csv", folder, table, dry_run=True)
    assert table.read_bytes() == original and not list(tmp_path.glob("*.bak.csv"))
    changes = merge_review(tmp_path / "review.csv", folder, table)
    expected = {
        (int(decided[0]["line"]), decided[0]["field"], decided[0]["predicted"]),
        (int(decided[1]["line"]), decided[1]["field"], decided[1]["corrected_label"]),
    }
    assert {(c.line, c.field, c.after) for c in changes} == expected
    backup = next(tmp_path.glob("annotations.*.bak.csv"))
    assert backup.read_bytes() == original
    # Row for row: every original value kept; the two new labels and their sources added.
    found = differences(backup, table)
    assert {(line, column, after) for line, column, before, after in found if before == ""} == {
        *expected,
        *((line, f"{field}_source", f"review:{found_date(table)}") for line, field, _ in expected),
    }
    assert all(before == "" for _, _, before, _ in found)
    after_first = table.read_bytes()
    assert merge_review(tmp_path / "review.csv", folder, table) == []
    assert table.read_bytes() == after_first and len(list(tmp_path.glob("*.bak.csv"))) == 1


def found_date(table: Path) -> str:
    """The date in the table's review sources (the day the merge ran)."""
    _, rows = read_rows(table)
    sources = {v for row in rows for k, v in row.items() if k.endswith("_source") and v}
    (source,) = sources
    return source.removeprefix("review:")


def test_merge_refuses_a_table_edited_since_and_names_the_row(enriched: Enriched, tmp_path):
    folder, table = fresh_copy(enriched, tmp_path)
    decide(folder / "review.csv", tmp_path / "review.csv")
    columns, rows = read_rows(table)
    rows[9]["period"] = "edited by hand"
    write_rows(table, columns, rows)
    edited = table.read_bytes()
    with pytest.raises(InputError, match=r"line 11 \(images/"):
        merge_review(tmp_path / "review.csv", folder, table)
    assert table.read_bytes() == edited


def test_accept_above_merges_confident_predictions_as_the_models(enriched: Enriched, tmp_path):
    folder, table = fresh_copy(enriched, tmp_path)
    _, predictions = read_rows(folder / "predictions.csv")
    changes = merge_review(folder / "review.csv", folder, table, accept_above=0.0)
    routed_by_type = {int(p["line"]) for p in predictions if p["field"] == "artwork_type"}
    assert changes and all(c.source.startswith("model:") for c in changes)
    assert {(c.line, c.field) for c in changes} == {
        (int(p["line"]), p["field"]) for p in predictions
    }, "every prediction, the fields of rows routed by stage 1 too (their type is merged)"
    assert routed_by_type <= {c.line for c in changes if c.field == "artwork_type"}


def test_label_studio_export_reads_as_the_same_decisions(enriched: Enriched, tmp_path: Path):
    tasks = json.loads((enriched.folder / "review.labelstudio.json").read_text())
    decided = decide(enriched.folder / "review.csv", tmp_path / "review.csv")
    choices = [decided[0]["predicted"], decided[1]["corrected_label"], "reject"]
    for task, choice in zip(tasks, choices, strict=False):
        result = {**task["predictions"][0]["result"][0], "value": {"choices": [choice]}}
        task["annotations"] = [{"result": [result], "was_cancelled": False}]
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    assert read_label_studio(export) == read_review(tmp_path / "review.csv")


def test_label_sources_leave_out_labels_of_other_sources(enriched: Enriched, tmp_path: Path):
    folder, table = fresh_copy(enriched, tmp_path)
    decide(folder / "review.csv", tmp_path / "review.csv")
    changes = merge_review(tmp_path / "review.csv", folder, table)
    change = changes[0]
    _, rows = read_rows(table)
    task_id = f"{rows[change.line - 2]['artwork_type']}/{change.field}"
    task = discover_tasks(CONF_DIR)["artefact" if change.field == "artwork_type" else task_id]

    def paths(*sources: str) -> set[str]:
        samples = read_labels(enriched.collection, "annotations", task, str(table), sources)
        return {s.path for s in samples if s.label == change.after}

    assert change.path in paths("catalogue", "review")
    assert change.path not in paths("catalogue")


def test_train_config_names_the_label_sources(compose_train):
    default = CollectionSettings.from_config(to_plain(compose_train().data))
    assert default.label_sources == ("catalogue", "review", "model")
    chosen = compose_train("data.label_sources=[catalogue,review]")
    assert CollectionSettings.from_config(to_plain(chosen.data)).label_sources == (
        "catalogue",
        "review",
    )


def test_merge_command_prints_what_it_would_write(enriched: Enriched, tmp_path: Path):
    folder, table = fresh_copy(enriched, tmp_path)
    decide(folder / "review.csv", tmp_path / "review.csv")
    process = run_script(
        "enrich.py",
        "mode=merge",
        f"review={tmp_path / 'review.csv'}",
        f"enrichment={folder}",
        f"table_file={table}",
        "dry_run=true",
        f"hydra.run.dir={tmp_path / 'merge'}",
    )
    assert_ok(process)
    assert "would write 2 cells" in process.stdout
    assert table.read_bytes() == enriched.table.read_bytes()
