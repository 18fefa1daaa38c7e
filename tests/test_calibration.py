"""Calibrated probabilities: the temperature's fit, its record in the checkpoint, its use in
every evaluation and prediction, and thresholds chosen for a precision on validation."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import TASK_IDS, Sweep

from significance.checkpoint_evaluation import evaluate_checkpoint
from significance.data.split import read_split
from significance.errors import ConfigurationError
from significance.models.calibration import (
    Calibration,
    CalibrationSettings,
    calibration_errors,
    fit_temperature,
)
from significance.models.module import load_classifier
from significance.pipeline import precision
from significance.pipeline.end_to_end import evaluate_pipeline
from significance.pipeline.loading import PipelineSpec, load_pipeline, spec_from_sweep
from significance.pipeline.predict import predict
from significance.training.calibration import calibrate_checkpoint, store_calibration
from significance.training.preflight import validate_training_config

SETTINGS = CalibrationSettings()
# A fitted record as training writes it, with a temperature far from 1.
TEMPERATURE_2 = Calibration("temperature", 2.0, True, None, 40, 0.9, 0.7)


def synthetic(count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of 4 classes and labels drawn from their softmax: calibrated at temperature 1."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(count, 4, generator=generator) * 2
    labels = torch.multinomial(logits.softmax(dim=1), 1, generator=generator).squeeze(1)
    return logits, labels


@pytest.mark.parametrize("temperature", [0.4, 1.0, 2.5])
def test_the_fit_recovers_a_known_temperature(temperature: float):
    logits, labels = synthetic(5000)
    # Logits multiplied by 1 / T: calibrated again once divided by T.
    fitted = fit_temperature(logits / temperature, labels, SETTINGS)
    assert fitted.fitted and fitted.reason is None and fitted.images == 5000
    assert fitted.temperature == pytest.approx(1 / temperature, rel=0.06)
    assert fitted.nll_after <= fitted.nll_before
    before, after = calibration_errors(logits / temperature, labels, fitted.temperature)
    assert after < 0.03 and (temperature == 1.0 or after < before)


@pytest.mark.parametrize(
    "case, reason",
    [
        ("small", "too few validation images: 29"),
        ("perfect", "accuracy 1.0"),
        ("overconfident", "at the lowest temperature, 0.05"),
        ("useless", "at the highest temperature, 20"),
    ],
)
def test_what_cannot_be_fitted_keeps_temperature_1_and_says_why(case: str, reason: str):
    logits, labels = synthetic(500)
    logits = {
        "small": logits[:29],
        "perfect": torch.nn.functional.one_hot(labels, 4).float() * 3,
        # One in four wrong, but almost no spread among the logits: best T far below 0.05.
        "overconfident": torch.nn.functional.one_hot(labels, 4).float() * 1e-3,
        "useless": -logits,  # the probabilities point away from the labels: T -> infinity
    }[case]
    if case == "overconfident":
        logits[::4] = logits[::4].roll(1, dims=1)
    fitted = fit_temperature(logits, labels[: len(logits)], SETTINGS)
    assert not fitted.fitted and fitted.temperature == 1.0
    assert reason in fitted.reason


def test_bad_calibration_settings_are_refused_before_training(compose_train):
    with pytest.raises(ConfigurationError, match="min_temperature < 1 < max_temperature"):
        validate_training_config(compose_train("calibration.max_temperature=0.5"))
    with pytest.raises(ConfigurationError, match=r"calibration\.method"):
        CalibrationSettings.from_config({"method": "platt"})
    assert not CalibrationSettings.from_config(
        compose_train("calibration=none").calibration
    ).enabled


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_training_stores_the_calibration_and_reports_it(task_id: str, all_tasks_sweep: Sweep):
    run_dir = all_tasks_sweep.job_dir(task_id)
    result = json.loads((run_dir / "result.json").read_text())
    stored = torch.load(result["checkpoint"], map_location="cpu", weights_only=True)
    record = stored["calibration"]
    validation = len(read_split(run_dir / "split.csv")["val"])
    assert record["method"] == "temperature" and record["images"] == validation
    if record["fitted"]:
        assert 0.05 < record["temperature"] < 20 and record["nll_after"] <= record["nll_before"]
    else:
        assert record["temperature"] == 1.0 and record["reason"]
    metrics = json.loads((run_dir / "test" / "metrics.json").read_text())
    assert metrics["calibration"] == record and result["temperature"] == record["temperature"]
    assert 0 <= metrics["test/ece"] <= 1 and 0 <= metrics["test/ece_calibrated"] <= 1
    if not record["fitted"]:
        assert metrics["test/ece_calibrated"] == pytest.approx(metrics["test/ece"])
    report = (run_dir / "test" / "report.md").read_text()
    assert "## Calibration" in report and "](reliability.png)" in report
    assert (record["reason"] or f"{record['temperature']:.4g}") in report
    png = (run_dir / "test" / "reliability.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def copied_checkpoint(all_tasks_sweep: Sweep, task_id: str, to: Path) -> Path:
    """A copy of the sweep's run of `task_id` whose checkpoint holds temperature 2."""
    shutil.copytree(all_tasks_sweep.job_dir(task_id), to)
    checkpoint = to / "checkpoints" / "best.ckpt"
    contents = torch.load(checkpoint, weights_only=True)
    contents["hyper_parameters"]["split_file"] = str(to / "split.csv")
    torch.save(contents, checkpoint)
    store_calibration(checkpoint, TEMPERATURE_2)
    return checkpoint


def probability_rows(folder: Path) -> list[list[float]]:
    with (folder / "predictions.csv").open() as handle:
        return [
            [float(v) for k, v in row.items() if k.startswith("p_")]
            for row in csv.DictReader(handle)
        ]


def test_evaluation_uses_the_temperature_and_calibration_none_leaves_it_out(
    all_tasks_sweep: Sweep, tmp_path: Path
):
    checkpoint = copied_checkpoint(all_tasks_sweep, "artefact", tmp_path / "run")
    assert load_classifier(checkpoint).calibration == TEMPERATURE_2
    arguments = {"accelerator": "cpu", "num_workers": 0}
    on = evaluate_checkpoint(checkpoint, tmp_path / "on", **arguments)
    off = evaluate_checkpoint(checkpoint, tmp_path / "off", calibrated=False, **arguments)
    assert on["calibration"]["temperature"] == 2.0
    assert (
        off["calibration"]["method"] == "none"
        and "calibration=none" in off["calibration"]["reason"]
    )
    assert off["test/ece_calibrated"] == pytest.approx(off["test/ece"])
    assert on["test/ece"] == pytest.approx(off["test/ece"])  # the same model at T = 1
    for key in ("test/acc", "test/f1_macro", "test/loss"):
        assert on[key] == pytest.approx(off[key])
    # calibration=none: the model's own softmax; on: softmax(logits / 2) of the same logits.
    calibrated, own = probability_rows(tmp_path / "on"), probability_rows(tmp_path / "off")
    for row_on, row_off in zip(calibrated, own, strict=True):
        expected = (torch.tensor(row_off).clamp_min(1e-30).log() / 2).softmax(dim=0)
        assert row_on == pytest.approx(expected.tolist(), abs=1e-4)
    assert (
        "temperature | 2, fitted on 40 validation images" in (tmp_path / "on/report.md").read_text()
    )
    assert "calibration=none" in (tmp_path / "off" / "report.md").read_text()


def test_training_fits_on_the_validation_split_unless_calibration_none(
    all_tasks_sweep: Sweep, compose_train, tmp_path: Path
):
    checkpoint = copied_checkpoint(all_tasks_sweep, "coins/material", tmp_path / "run")
    off = CalibrationSettings.from_config(compose_train("calibration=none").calibration)
    calibrate_checkpoint(checkpoint, off, accelerator="cpu", num_workers=0)
    assert load_classifier(checkpoint).calibration == Calibration(
        "none", reason="turned off at training (calibration=none)"
    )
    # What train() runs when training ends: every validation image scored, none of the test.
    small = CalibrationSettings(min_images=1000)
    record = calibrate_checkpoint(checkpoint, small, accelerator="cpu", num_workers=0)
    assert record.images == len(read_split(tmp_path / "run" / "split.csv")["val"])
    assert load_classifier(checkpoint).calibration == record and not record.fitted


def test_an_old_checkpoint_loads_with_temperature_1():
    fixture = (
        Path(__file__).parent / "fixtures" / "release_0_1" / "sweep" / "0_icons-location_seed0"
    )
    model = load_classifier(fixture / "checkpoints" / "best.ckpt")
    assert model.calibration.temperature == 1.0 and not model.calibration.fitted
    assert "before calibration existed" in model.calibration.reason
    logits = torch.randn(3, 2)
    assert torch.allclose(model.probabilities(logits), logits.softmax(dim=1))


def test_predict_applies_the_temperature_unless_calibration_none(
    all_tasks_sweep: Sweep, demo_dir: Path, tmp_path: Path
):
    stage1 = copied_checkpoint(all_tasks_sweep, "artefact", tmp_path / "artefact")
    spec = PipelineSpec(str(stage1))
    with (demo_dir / "annotations.csv").open() as handle:
        images = [str(demo_dir / row["path"]) for row in list(csv.DictReader(handle))[:6]]
    arguments = {"batch_size": 4, "num_workers": 0, "accelerator": "cpu"}
    on = predict(images, spec, tmp_path / "on", **arguments)
    off = predict(images, spec, tmp_path / "off", calibrated=False, **arguments)
    store_calibration(stage1, Calibration())  # the same model without a temperature
    plain = predict(images, spec, tmp_path / "plain", **arguments)
    key = "artwork_type/probability"
    assert [row[key] for row in off] == pytest.approx([row[key] for row in plain])
    assert [row["artwork_type"] for row in on] == [row["artwork_type"] for row in off]
    # T = 2 > 1 flattens: the top probability falls (towards 1 / classes), never rises.
    assert all(a[key] < b[key] for a, b in zip(on, off, strict=True) if b[key] > 0.21)
    assert all(
        model.calibration.temperature == 1.0
        for model in load_pipeline(spec, "cpu", False).models().values()
    )


def test_a_threshold_for_precision_is_chosen_on_validation_and_reported_on_test(monkeypatch):
    # Top probabilities with right (True) or wrong answers.
    validation = [(0.99, True), (0.9, True), (0.8, True), (0.8, False), (0.7, True), (0.6, False)]
    assert precision.threshold_for_precision(validation, 0.75) == 0.7  # 4 of 5 right
    assert precision.threshold_for_precision(validation, 0.8) == 0.7
    assert precision.threshold_for_precision(validation, 0.85) == 0.9  # the tie at 0.8 is 3/4
    assert precision.threshold_for_precision([(0.9, False)], 0.5) is None
    tested = [(0.95, True), (0.75, False), (0.72, True), (0.5, True)]
    monkeypatch.setattr(precision, "validation_decisions", lambda *args: validation)

    pipeline = SimpleNamespace(
        checkpoints={"artefact": "best.ckpt"}, models=lambda: {"artefact": 0}
    )
    figures = precision.target_precision_figures(pipeline, {"artefact": tested}, 0.8)
    model = figures["models"]["artefact"]
    assert model["threshold"] == 0.7  # from validation: on test, 0.72 would have been chosen
    assert model["validation"] == {"images": 6, "answered": 5, "coverage": 5 / 6, "precision": 0.8}
    assert model["test"] == {"images": 4, "answered": 3, "coverage": 0.75, "precision": 2 / 3}
    with pytest.raises(ConfigurationError, match="target_precision"):
        precision.check_target_precision(1.5)


def test_pipeline_evaluation_reports_calibration_and_target_precision(
    all_tasks_sweep: Sweep, demo_dir: Path, tmp_path: Path
):
    every = spec_from_sweep(all_tasks_sweep.path)
    spec = PipelineSpec(every.stage1, {"coins": {"material": every.stage2["coins"]["material"]}})
    metrics = evaluate_pipeline(
        spec,
        tmp_path,
        data={"root": str(demo_dir)},
        num_workers=0,
        accelerator="cpu",
        target_precision=0.9,
    )
    report = (tmp_path / "pipeline_report.md").read_text()
    assert "## Calibration" in report and "## Target precision 0.9" in report
    for task_id, images in (("artefact", metrics["images"]), ("coins/material", None)):
        stored = torch.load(
            all_tasks_sweep.job_dir(task_id) / "checkpoints" / "best.ckpt", weights_only=True
        )
        calibration = metrics["calibration"][task_id]
        assert (tmp_path / task_id.replace("/", "-") / "reliability.png").is_file()
        assert calibration["models"] == [stored["calibration"]]  # one model, not an ensemble
        assert 0 <= calibration["ece"] <= 1 and 0 <= calibration["ece_calibrated"] <= 1
        chosen = metrics["target_precision"]["models"][task_id]
        validation = read_split(all_tasks_sweep.job_dir(task_id) / "split.csv")["val"]
        assert chosen["validation"]["images"] == len(validation)
        tested = images or metrics["fields"][task_id]["images"]
        assert chosen["test"]["images"] == tested
        if chosen["threshold"] is None:
            assert chosen["test"]["answered"] is None
            continue
        assert chosen["validation"]["precision"] >= 0.9
        assert chosen["test"]["answered"] <= tested
        assert math.isclose(chosen["test"]["coverage"], chosen["test"]["answered"] / tested)
