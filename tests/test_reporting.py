"""Reports: the files of an evaluation agree with each other, sweeps average seeds, wandb."""

import csv
import json
import re
import shutil
import statistics
from collections import Counter
from pathlib import Path

import pytest
import torch
from conftest import FAST, assert_ok, run_script

from significance.data.split import read_split
from significance.reporting.sweep import write_sweep_report
from significance.training import train


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def report_figure(report: str, name: str) -> float:
    """A figure of report.md's summary table."""
    return float(re.search(rf"^\| {re.escape(name)} \| ([0-9.]+) \|$", report, re.M).group(1))


def test_evaluation_files_agree_with_each_other_and_the_split(compose_train, tmp_path: Path):
    cfg = compose_train("task=manuscripts/description")
    train(cfg)
    run_dir, test_dir = tmp_path / "run", tmp_path / "run" / "test"
    metrics = json.loads((test_dir / "metrics.json").read_text())
    classes = list(cfg.task.classes)
    test_split = read_split(run_dir / "split.csv")["test"]

    predictions = read_csv(test_dir / "predictions.csv")
    assert sorted(row["path"] for row in predictions) == sorted(s.path for s in test_split)
    labels = {sample.path: sample.label for sample in test_split}
    for row in predictions:
        assert row["true_class"] == labels[row["path"]]
        probabilities = [float(row[f"p_{name}"]) for name in classes]
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)
        assert row["predicted_class"] == classes[probabilities.index(max(probabilities))]
    confusion = torch.zeros(len(classes), len(classes), dtype=torch.int64)
    for row in predictions:
        confusion[classes.index(row["true_class"]), classes.index(row["predicted_class"])] += 1
    assert confusion.tolist() == metrics["confusion_matrix"]
    assert confusion.sum() == len(test_split)

    per_class = {row["name"]: row for row in read_csv(test_dir / "per_class.csv")}
    assert list(per_class) == [*classes, "macro avg", "weighted avg"]
    support = Counter(sample.label for sample in test_split)
    for name in classes:
        assert int(per_class[name]["support"]) == support[name] == metrics[f"test/support/{name}"]
        for figure in ("precision", "recall", "f1"):
            assert float(per_class[name][figure]) == pytest.approx(metrics[f"test/{figure}/{name}"])
    macro = per_class["macro avg"]
    assert float(macro["accuracy"]) == pytest.approx(metrics["test/acc"])
    assert float(macro["f1"]) == pytest.approx(metrics["test/f1_macro"])
    assert float(macro["recall"]) == pytest.approx(metrics["test/acc_macro"])
    recalls = [float(per_class[name]["recall"]) for name in classes]
    weighted = sum(r * support[n] for r, n in zip(recalls, classes)) / len(test_split)
    assert float(per_class["weighted avg"]["recall"]) == pytest.approx(weighted)

    report = (test_dir / "report.md").read_text()
    assert report_figure(report, "accuracy") == pytest.approx(metrics["test/acc"], abs=5e-5)
    assert report_figure(report, "macro F1") == pytest.approx(metrics["test/f1_macro"], abs=5e-5)
    assert "manuscripts/description" in report and metrics["checkpoint"] in report
    assert "| text&figure |" in report and "](confusion_matrix.png)" in report
    for image in (test_dir / "confusion_matrix.png", run_dir / "curves.png"):
        assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
