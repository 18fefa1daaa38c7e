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
from conftest import assert_ok, read_csv, run_script, run_sweep

from significance.data.split import read_split
from significance.reporting.sweep import write_sweep_report
from significance.training.train import train


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
    weighted = sum(float(per_class[n]["recall"]) * support[n] for n in classes) / len(test_split)
    assert float(per_class["weighted avg"]["recall"]) == pytest.approx(weighted)

    report = (test_dir / "report.md").read_text()
    assert report_figure(report, "accuracy") == pytest.approx(metrics["test/acc"], abs=5e-5)
    assert report_figure(report, "macro F1") == pytest.approx(metrics["test/f1_macro"], abs=5e-5)
    assert "manuscripts/description" in report and metrics["checkpoint"] in report
    assert "| text&figure |" in report and "](confusion_matrix.png)" in report
    for image in (test_dir / "confusion_matrix.png", run_dir / "curves.png"):
        assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def expected_figure(values: list[float]) -> str:
    """A figure of results.md, computed here from its definition (sample standard deviation)."""
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f"{mean:.3f} (1 seed)"
    std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
    return f"{mean:.3f} ± {std:.3f}"


def test_seed_sweep_reports_mean_and_std_and_logs_wandb_offline(tmp_path: Path, demo_dir: Path):
    sweep_dir = tmp_path / "sweep"
    process = run_sweep(
        sweep_dir, demo_dir, "task=icons/location", "seed=1,2", "trainer.max_epochs=1", wandb=True
    )
    assert_ok(process)
    job_dirs = sorted(p for p in sweep_dir.iterdir() if p.is_dir() and p.name[0].isdigit())
    # One job per (task, seed), and the seed moves the split.
    rows = read_csv(sweep_dir / "summary.csv")
    assert [(r["task"], r["seed"], r["status"]) for r in rows] == [
        ("icons/location", "1", "ok"),
        ("icons/location", "2", "ok"),
    ]
    assert len(job_dirs) == 2
    assert (job_dirs[0] / "split.csv").read_text() != (job_dirs[1] / "split.csv").read_text()
    metrics = [json.loads((job / "test" / "metrics.json").read_text()) for job in job_dirs]
    per_class = [
        {row["name"]: row for row in read_csv(job / "test" / "per_class.csv")} for job in job_dirs
    ]
    results_md = check_results_are_mean_and_std(sweep_dir, metrics, per_class)
    check_report_py_rewrites_them(sweep_dir, results_md, tmp_path / "single", metrics)
    for job, job_metrics in zip(job_dirs, metrics, strict=True):
        check_wandb_run_holds_the_test_report(job, job_metrics)


def check_results_are_mean_and_std(
    sweep_dir: Path, metrics: list[dict], per_class: list[dict[str, dict[str, str]]]
) -> str:
    """Figures in results.csv and results.md are mean and sample std of the two seeds."""
    results = {(r["row"], r["figure"]): r for r in read_csv(sweep_dir / "results.csv")}
    accuracies = [m["test/acc"] for m in metrics]
    assert float(results["macro avg", "accuracy"]["mean"]) == pytest.approx(sum(accuracies) / 2)
    assert float(results["macro avg", "accuracy"]["std"]) == pytest.approx(
        abs(accuracies[0] - accuracies[1]) / 2**0.5
    )
    assert results["macro avg", "accuracy"]["n"] == "2"
    cyprus = [float(table["cyprus"]["precision"]) for table in per_class]
    assert float(results["cyprus", "precision"]["std"]) == pytest.approx(statistics.stdev(cyprus))
    results_md = (sweep_dir / "results.md").read_text()
    assert "trained on 72% of each collection (the study: 80%)" in results_md
    f1 = [m["test/f1_macro"] for m in metrics]
    precision = [float(table["macro avg"]["precision"]) for table in per_class]
    recall = [float(table["cyprus"]["recall"]) for table in per_class]
    overview = next(line for line in results_md.splitlines() if line.startswith("| `icons/"))
    supports = [metrics[0][f"test/support/{name}"] for name in ("cyprus", "other")]
    assert [cell.strip() for cell in overview.strip("|").split("|")][1:] == [
        "1, 2 (n=2)",
        expected_figure(accuracies),
        "0.99",  # the study's accuracy for icons/location
        expected_figure([m["test/acc_macro"] for m in metrics]),  # balanced accuracy
        expected_figure(precision),
        expected_figure(f1),
        "0.99",
        # The two seeds' splits hold the same number of each class.
        "cyprus {}, other {}".format(*supports),
    ]
    cyprus_precision = expected_figure([float(t["cyprus"]["precision"]) for t in per_class])
    assert f"| cyprus | {cyprus_precision} | {expected_figure(recall)} |" in results_md
    return results_md


def check_report_py_rewrites_them(
    sweep_dir: Path, written: str, single: Path, metrics: list[dict]
) -> None:
    """report.py rewrites the same results; a single seed is marked as such."""
    (sweep_dir / "results.md").unlink()
    assert_ok(run_script("report.py", f"sweep_dir={sweep_dir}"))
    assert (sweep_dir / "results.md").read_text() == written
    shutil.copytree(sweep_dir, single)
    summary = read_csv(single / "summary.csv")
    with (single / "summary.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(summary[0]))
        writer.writeheader()
        writer.writerow(summary[0])
    single_md = write_sweep_report(single).read_text()
    assert f"| {expected_figure([metrics[0]['test/acc']])} | 0.99 |" in single_md
    assert "1 (n=1)" in single_md and " ± " not in single_md.split("## Overview")[1]


def check_wandb_run_holds_the_test_report(job: Path, job_metrics: dict) -> None:
    """A job's offline wandb run holds the per-class table and the images."""
    (run,) = (job / "wandb").glob("offline-run-*")
    media = run / "files" / "media"
    (table_file,) = (media / "table" / "test").glob("per_class_*.table.json")
    table = json.loads(table_file.read_text())
    assert [row[0] for row in table["data"]] == ["cyprus", "other", "macro avg", "weighted avg"]
    assert table["data"][2][table["columns"].index("accuracy")] == pytest.approx(
        job_metrics["test/acc"]
    )
    assert list((media / "images" / "test").glob("confusion_matrix_*.png"))
    predictions = read_csv(job / "test" / "predictions.csv")
    mistakes = sum(r["true_class"] != r["predicted_class"] for r in predictions)
    shown = list((media / "images" / "test").glob("worst_misclassified_*.png"))
    assert len(shown) == min(16, mistakes)
    assert (job / "curves.png").is_file()


def test_sweep_report_separates_configurations_and_lists_failed_jobs(tmp_path: Path):
    """Jobs differing in an override other than the seed are separate rows; failures listed."""
    sweep = tmp_path / "sweep"
    jobs = [  # (overrides, status, accuracy)
        ("task=icons/location seed=1 optimizer.lr=0.1 model=tiny_vgg", "ok", 0.5),
        ("task=icons/location seed=2 optimizer.lr=0.1 model=tiny_vgg", "ok", 0.7),
        ("task=icons/location seed=1 optimizer.lr=0.2 model=tiny_vgg", "ok", 0.9),
        ("task=icons/location seed=2 optimizer.lr=0.2 model=tiny_vgg", "failed", None),
    ]
    summary = []
    for index, (overrides, status, accuracy) in enumerate(jobs):
        job_dir = sweep / f"{index}_icons-location"
        (job_dir / "test").mkdir(parents=True)
        if accuracy is not None:
            rows = [
                ["cyprus", accuracy, accuracy, accuracy, "", 15],
                ["macro avg", accuracy, accuracy, accuracy, accuracy, 30],
            ]
            with (job_dir / "test" / "per_class.csv").open("w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["name", "precision", "recall", "f1", "accuracy", "support"])
                writer.writerows(rows)
        seed = overrides.split("seed=")[1].split()[0]
        summary.append(
            {
                "job": index,
                "task": "icons/location",
                "seed": seed,
                "status": status,
                "exit_code": 0 if status == "ok" else 1,
                "reason": "" if status == "ok" else "CUDA out of memory",
                "job_dir": str(job_dir),
                "overrides": overrides,
            }
        )
    with (sweep / "summary.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(summary[0]))
        writer.writeheader()
        writer.writerows(summary)
    results = write_sweep_report(sweep).read_text()
    overview = results.split("## Overview")[1].split("\n## ")[0]
    assert (
        f"| `icons/location (optimizer.lr=0.1)` | 1, 2 (n=2) | {expected_figure([0.5, 0.7])} |"
        in overview
    )
    assert "| `icons/location (optimizer.lr=0.2)` | 1 (n=1) | 0.900 (1 seed) |" in overview
    assert "model=tiny_vgg" not in results  # shared by every job: not a configuration
    assert "job 3 `icons/location` seed 2: failed (CUDA out of memory)" in results


def test_results_show_the_test_selected_figure_and_how_much_it_inflates():
    from significance.reporting.sweep import Configuration, overview_table

    cells = {"name": "macro avg", "precision": "0.9", "recall": "0.9", "f1": "0.9"}
    ours = Configuration(
        "icons/location", "", ["0", "1"], [[{**cells, "accuracy": "0.90"}]] * 2, [0.95, 0.97]
    )
    table = overview_table([ours])
    assert "test-selected, as the study did" in table and "accuracy (validation-selected)" in table
    assert "0.960 ± 0.014" in table and "+0.060" in table
    assert "test-selected" not in overview_table(
        [Configuration("icons/location", "", ["0"], [[{**cells, "accuracy": "0.90"}]])]
    )


def test_the_overview_shows_balanced_accuracy_and_each_classs_test_images():
    from significance.reporting.sweep import Configuration, overview_table

    def table(minority: int) -> list[dict[str, str]]:
        """Every image called `other`: accuracy 240 / (240 + minority), balanced 0.5."""
        accuracy = str(240 / (240 + minority))
        return [
            {"name": "cyprus", "recall": "0", "support": str(minority)},
            {"name": "other", "recall": "1", "support": "240"},
            {"name": "macro avg", "recall": "0.5", "accuracy": accuracy},
            {"name": "weighted avg", "recall": accuracy, "accuracy": accuracy},
        ]

    majority = Configuration("icons/location", "", ["0", "1"], [table(12), table(13)])
    row = overview_table([majority]).splitlines()[-1]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert "balanced accuracy (macro recall)" in overview_table([majority])
    assert cells[2].startswith("0.95") and cells[4] == "0.500 ± 0.000"
    assert cells[-1] == "cyprus 12.5, other 240"


def test_a_figure_over_seeds_is_mean_and_sample_std():
    from significance.reporting.sweep import MeanStd

    assert str(MeanStd.of([0.5, 0.7, 0.9])) == expected_figure([0.5, 0.7, 0.9]) == "0.700 ± 0.200"
    assert MeanStd.of([0.5, 0.7, 0.9]).n == 3
    assert str(MeanStd.of([0.25])) == "0.250 (1 seed)" and MeanStd.of([0.25]).std is None
