"""Wrong labels: out-of-fold probabilities that contradict a label rank it among the issues."""

import csv
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from significance.data.audit import AuditReport
from significance.data.label_issues import find_label_issues, read_oof_predictions
from significance.errors import InputError
from significance.reporting.audit_report import LABEL_ISSUES_CSV, write_audit
from significance.run_files import OOF_PREDICTIONS_FILE

CLASSES = ("gold", "silver", "bronze")


def write_oof(sweep_dir: Path, rows: list[dict]) -> None:
    """An oof_predictions.csv as a cross-validation sweep writes it (two tasks, wide columns)."""
    columns = ["task", "seed", "fold", "path", "label", *(f"p_{c}" for c in (*CLASSES, "a", "b"))]
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with (sweep_dir / OOF_PREDICTIONS_FILE).open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)


def confident_rows(count: int, flipped: set[int], seed: int = 0) -> list[dict]:
    """Rows whose models are right, mostly sure; the labels of `flipped` are wrong.

    Confident learning counts an image as another class's when its probability of that class
    reaches the class's mean self-confidence: the flipped images' models are sure.
    """
    draw = random.Random(seed)
    rows = []
    for i in range(count):
        truth = i % len(CLASSES)
        probabilities = [draw.uniform(0.0, 0.05) for _ in CLASSES]
        sure = i in flipped or draw.random() < 0.8
        probabilities[truth] = draw.uniform(0.9, 0.99) if sure else draw.uniform(0.5, 0.7)
        total = sum(probabilities)
        label = CLASSES[(truth + 1) % len(CLASSES)] if i in flipped else CLASSES[truth]
        rows.append(
            {
                "task": "coins/material",
                "seed": 0,
                "fold": i % 3,
                "path": f"img/{i:03d}.png",
                "label": label,
                **{f"p_{c}": p / total for c, p in zip(CLASSES, probabilities, strict=True)},
            }
        )
    return rows


def test_flipped_labels_rank_first_with_the_true_class_suggested(tmp_path):
    flipped = {3, 17, 42, 58, 71, 90}
    rows = confident_rows(120, flipped)
    other_task = [
        {"task": "icons/location", "seed": 0, "fold": 0, "path": f"i{i}.png", "label": "a",
         "p_a": 0.9, "p_b": 0.1}
        for i in range(6)
    ]  # fmt: skip
    write_oof(tmp_path, rows + other_task)
    issues = find_label_issues(read_oof_predictions(tmp_path))
    coins = [issue for issue in issues if issue.task == "coins/material"]
    top = {issue.path for issue in coins[: len(flipped)]}
    assert top == {f"img/{i:03d}.png" for i in flipped}
    for issue in coins[: len(flipped)]:
        index = int(issue.path[4:7])
        assert issue.suggested == CLASSES[index % 3] != issue.label
        assert issue.p_suggested > 0.6 > issue.p_label
    assert [issue.rank for issue in coins] == list(range(1, len(coins) + 1))


def test_an_image_of_several_seeds_counts_once_with_its_mean_probability(tmp_path):
    rows = confident_rows(30, set())
    again = [{**row, "seed": 1} for row in confident_rows(30, set(), seed=1)]
    write_oof(tmp_path, rows + again)
    (task,) = read_oof_predictions(tmp_path)
    assert len(task.paths) == 30 and task.classes == list(CLASSES)
    expected = np.mean(
        [[rows[0][f"p_{c}"] for c in CLASSES], [again[0][f"p_{c}"] for c in CLASSES]], axis=0
    )
    assert np.allclose(task.probabilities[0], expected)


def test_a_folder_without_out_of_fold_predictions_is_refused(tmp_path):
    with pytest.raises(InputError, match="cross-validation sweep"):
        read_oof_predictions(tmp_path)


def test_the_audit_lists_the_issues_with_thumbnails_and_a_csv(tmp_path):
    flipped = {5, 40}
    rows = confident_rows(60, flipped)
    root = tmp_path / "collection"
    for row in rows:
        (root / row["path"]).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (300, 200), (200, 150, 50)).save(root / row["path"])
    write_oof(tmp_path / "sweep", rows)
    report = AuditReport(root, "annotations")
    report.label_issues = find_label_issues(read_oof_predictions(tmp_path / "sweep"))
    markdown, _ = write_audit(report, tmp_path / "audit")
    text = markdown.read_text()
    assert "## Labels the cross-validated models doubt" in text
    with (tmp_path / "audit" / LABEL_ISSUES_CSV).open() as handle:
        listed = list(csv.DictReader(handle))
    assert {row["path"] for row in listed[:2]} == {"img/005.png", "img/040.png"}
    thumbnails = sorted((tmp_path / "audit" / "thumbnails").iterdir())
    assert thumbnails and all(f"thumbnails/{p.name}" in text for p in thumbnails)
    assert max(Image.open(thumbnails[0]).size) <= 96
