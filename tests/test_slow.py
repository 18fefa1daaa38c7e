"""Slow end-to-end checks, run with `pytest -m slow`: the README's demo and real VGG16 weights."""

import csv
from pathlib import Path

import pytest
import torch
import torchvision
from conftest import assert_ok, run_script

from significance.models.build import build_classifier

pytestmark = pytest.mark.slow


def test_readme_demo_sweep_learns_well_above_chance(tmp_path: Path, demo_dir: Path):
    sweep_dir = tmp_path / "sweep"
    # No FAST overrides here: the demo exactly as the README runs it.
    process = run_script(
        "train.py",
        "-m",
        "experiment=demo",
        f"data.demo_dir={demo_dir}",
        f"hydra.sweep.dir={sweep_dir}",
        timeout=1200,
    )
    assert_ok(process)
    with (sweep_dir / "summary.csv").open() as handle:
        rows = {row["task"]: row for row in csv.DictReader(handle)}
    chance = {"coins/period": 1 / 3, "icons/location": 1 / 2}
    for task, row in rows.items():
        assert row["status"] == "ok"
        assert float(row["test_acc"]) >= chance[task] + 0.2, (task, row["test_acc"])


def test_vgg16_imagenet_file_in_the_hub_cache_is_loaded(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    reference = torchvision.models.vgg16()
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(reference.state_dict(), tmp_path / "hub" / "checkpoints" / "vgg16-397923af.pth")
    model = build_classifier("vgg16", num_classes=3, pretrained=True)
    assert torch.equal(model.features[0].weight, reference.features[0].weight)
    assert torch.equal(model.classifier[3].weight, reference.classifier[3].weight)
    assert model.classifier[6].out_features == 3
