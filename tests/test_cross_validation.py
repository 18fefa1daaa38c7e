"""A cross-validation sweep end to end: fold jobs, their report, out-of-fold file, ensemble."""

from __future__ import annotations

import csv
import json
import random
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch
from conftest import Sweep, made_once, read_csv, sweep_once
from test_audit import compose_audit
from test_reporting import expected_figure

from significance.audit_command import audit_configured_collection
from significance.data.split import read_split
from significance.errors import InputError
from significance.models.ensemble import FoldEnsemble
from significance.pipeline.end_to_end import evaluate_pipeline
from significance.pipeline.inference import probabilities
from significance.pipeline.loading import load_pipeline, spec_from_sweep

FOLDS = 3
FLIPPED_SHARE = 0.05
FLIPPED_FILE = "flipped.txt"


def flip_artwork_types(collection: Path, share: float, seed: int = 0) -> list[str]:
    """Give `share` of the rows of `collection`'s table another artwork type; their paths."""
    table = collection / "annotations.csv"
    with table.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    types = sorted({row["artwork_type"] for row in rows})
    draw = random.Random(seed)
    flipped = sorted(draw.sample(range(len(rows)), round(share * len(rows))))
    for index in flipped:
        wrong = [kind for kind in types if kind != rows[index]["artwork_type"]]
        rows[index]["artwork_type"] = draw.choice(wrong)
    with table.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return [rows[index]["path"] for index in flipped]


@pytest.fixture(scope="module")
def noisy_demo(tmp_path_factory: pytest.TempPathFactory, demo_dir: Path) -> Path:
    """The demo collection with 5% of its artwork types wrong, as catalogues have them."""

    def make(folder: Path) -> None:
        shutil.copytree(demo_dir, folder / "demo")
        paths = flip_artwork_types(folder / "demo", FLIPPED_SHARE)
        (folder / FLIPPED_FILE).write_text("\n".join(paths))

    return made_once(tmp_path_factory, "noisy_demo", make)


@pytest.fixture(scope="module")
def cv_sweep(tmp_path_factory: pytest.TempPathFactory, noisy_demo: Path) -> Sweep:
    """`experiment=cv` with 3 folds of the stage-1 task (a pipeline of its own) on the noisy demo.

    Four epochs at a higher rate than the study's: models that learn (about half right on
    five types at 32 px, recorded in experiments/label_issues.md) to find the wrong labels.
    """
    return sweep_once(
        tmp_path_factory,
        "cross_validation",
        noisy_demo / "demo",
        "experiment=cv",
        f"data.folds={FOLDS}",
        "task=artefact",
        "trainer.max_epochs=4",
        "optimizer.lr=1e-2",
        f"data.root={noisy_demo / 'demo'}",
    )


def test_experiment_cv_runs_one_job_per_fold_named_by_its_fold(cv_sweep: Sweep):
    rows = cv_sweep.rows()
    assert [(r["task"], r["seed"], r["fold"], r["status"]) for r in rows] == [
        ("artefact", "0", str(fold), "ok") for fold in range(FOLDS)
    ]
    for fold, row in enumerate(rows):
        job_dir = Path(row["job_dir"])
        assert job_dir.name == f"{fold}_artefact_seed0_fold{fold}"
        assert json.loads((job_dir / "result.json").read_text())["fold"] == fold
    assert "Split 750 images of artefact (fold 1 of 3)" in cv_sweep.output


def test_results_give_mean_and_std_over_the_folds(cv_sweep: Sweep):
    accuracies = [float(row["test_acc"]) for row in cv_sweep.rows()]
    results = (cv_sweep.path / "results.md").read_text()
    overview = next(line for line in results.splitlines() if line.startswith("| `artefact`"))
    cells = [cell.strip() for cell in overview.strip("|").split("|")]
    assert cells[1:3] == ["seed 0 × folds 0, 1, 2 (n=3)", expected_figure(accuracies)]
    assert "| seeds × folds |" in results and "tested on its own fold" in results
    (overall,) = [
        r
        for r in read_csv(cv_sweep.path / "results.csv")
        if (r["row"], r["figure"]) == ("macro avg", "accuracy")
    ]
    assert (overall["n"], overall["seeds"], overall["folds"]) == ("3", "0 0 0", "0 1 2")


def test_oof_predictions_hold_every_labelled_image_once_from_the_model_that_never_saw_it(
    cv_sweep: Sweep,
):
    rows = read_csv(cv_sweep.path / "oof_predictions.csv")
    first_split = read_split(Path(cv_sweep.rows()[0]["job_dir"]) / "split.csv")
    labels = {s.path: s.label for samples in first_split.values() for s in samples}
    assert sorted(row["path"] for row in rows) == sorted(labels)  # each once, all of them
    assert list(rows[0])[:6] == ["task", "configuration", "seed", "fold", "path", "label"]
    classes = [key[2:] for key in rows[0] if key.startswith("p_")]
    assert classes == ["coins", "frescoes", "icons", "manuscripts", "others"]
    for job in cv_sweep.rows():
        job_dir = Path(job["job_dir"])
        tested = {s.path for s in read_split(job_dir / "split.csv")["test"]}
        predictions = {r["path"]: r for r in read_csv(job_dir / "test" / "predictions.csv")}
        mine = [row for row in rows if row["fold"] == job["fold"]]
        assert {row["path"] for row in mine} == tested == set(predictions)
        for row in mine:
            assert row["label"] == labels[row["path"]] == predictions[row["path"]]["true_class"]
            assert all(row[f"p_{c}"] == predictions[row["path"]][f"p_{c}"] for c in classes)
            assert (row["task"], row["seed"]) == ("artefact", "0")


def small_copy(demo_dir: Path, folder: Path, per_type: int = 2) -> Path:
    """A collection of the first `per_type` images of each artwork type of the demo."""
    with (demo_dir / "annotations.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    taken: Counter[str] = Counter()
    kept = []
    for row in rows:
        taken[row["artwork_type"]] += 1
        if taken[row["artwork_type"]] <= per_type:
            kept.append(row)
    for row in kept:
        (folder / row["path"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(demo_dir / row["path"], folder / row["path"])
    with (folder / "annotations.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)
    return folder


def test_the_pipeline_uses_every_fold_model_as_one_ensemble(
    cv_sweep: Sweep, demo_dir: Path, tmp_path: Path
):
    spec = spec_from_sweep(cv_sweep.path)
    assert spec.stage1 == [row["checkpoint"] for row in cv_sweep.rows()]
    pipeline = load_pipeline(spec, "cpu")
    ensemble = pipeline.stage1
    assert isinstance(ensemble, FoldEnsemble) and len(ensemble) == FOLDS
    pixels = torch.randint(0, 256, (4, 3, 40, 40), dtype=torch.uint8)
    members = torch.stack([probabilities(member, pixels) for member in ensemble.members])
    assert torch.allclose(probabilities(ensemble, pixels), members.mean(0))
    assert not torch.allclose(members[0], members[1])  # three models, not one thrice
    data = {"root": str(small_copy(demo_dir, tmp_path / "copy"))}
    # Between them the fold models trained on every image of their collection.
    with pytest.raises(InputError, match="fold models of a cross-validation saw them all"):
        evaluate_pipeline(pipeline, tmp_path / "seen", data, num_workers=0, accelerator="cpu")
    metrics = evaluate_pipeline(
        pipeline, tmp_path / "all", data, num_workers=0, accelerator="cpu", exclude_seen=False
    )
    assert metrics["images"] == 10
    report = (tmp_path / "all" / "pipeline_report.md").read_text()
    assert "artefact (ensemble of 3 fold models, their mean probability)" in report
    assert metrics["checkpoints"]["artefact"] == spec.stage1


def test_fold_names_extend_folder_and_wandb_names_only_with_folds(compose_train):
    plain = compose_train("task=coins/material", "logger=wandb")
    assert plain.hydra.sweep.subdir == "0_coins-material_seed0"
    assert plain.logger.wandb.name == "coins-material-seed0"
    fold = compose_train("task=coins/material", "logger=wandb", "data.folds=5", "data.fold=3")
    assert fold.hydra.sweep.subdir == "0_coins-material_seed0_fold3"
    assert fold.logger.wandb.name == "coins-material-seed0-fold3"


def test_from_sweep_ensembles_the_fold_models_of_the_best_mean_configuration(tmp_path: Path):
    rows = [  # (task, seed, fold, overrides, status, best_val_acc, checkpoint)
        ("artefact", "0", "", "task=artefact", "ok", "0.9", "plain.ckpt"),
        ("coins/material", "0", "0", "optimizer.lr=0.1 data.fold=0", "ok", "0.95", "lucky.ckpt"),
        ("coins/material", "0", "1", "optimizer.lr=0.1 data.fold=1", "ok", "0.40", "a1.ckpt"),
        ("coins/material", "0", "0", "optimizer.lr=0.2 data.fold=0", "ok", "0.70", "b0.ckpt"),
        ("coins/material", "0", "1", "optimizer.lr=0.2 data.fold=1", "ok", "0.75", "b1.ckpt"),
        ("coins/material", "1", "0", "optimizer.lr=0.2 data.fold=0 seed=1", "ok", "0.7", "c0.ckpt"),
        ("coins/material", "1", "1", "optimizer.lr=0.2 data.fold=1 seed=1", "failed", "", ""),
    ]
    columns = ["task", "seed", "fold", "overrides", "status", "best_val_acc", "checkpoint"]
    with (tmp_path / "summary.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(rows)
    spec = spec_from_sweep(tmp_path)
    assert spec.stage1 == "plain.ckpt"  # no folds: the best checkpoint, as before
    assert spec.stage2 == {"coins": {"material": ["b0.ckpt", "b1.ckpt", "c0.ckpt"]}}


def test_the_audit_ranks_most_flipped_labels_among_its_first(cv_sweep: Sweep, noisy_demo: Path):
    flipped = set((noisy_demo / FLIPPED_FILE).read_text().split())
    cfg = compose_audit(f"data.root={noisy_demo / 'demo'}", f"label_issues={cv_sweep.path}")
    issues = audit_configured_collection(cfg).label_issues
    first = {issue.path for issue in issues[: 2 * len(flipped)]}
    recall = len(first & flipped) / len(flipped)
    # Measured 63% (experiments/label_issues.md): models half right still tell most of them.
    assert recall >= 0.5, f"{recall:.0%} of {len(flipped)} flipped among the first {len(first)}"
