"""The pipeline's parts that need no trained model: inputs, sweep specs, tallies, thresholds."""

import csv
from collections import Counter
from pathlib import Path

import pytest

from significance.errors import PipelineError
from significance.pipeline.loading import PipelineSpec, spec_from_config, spec_from_sweep
from significance.pipeline.predict import list_inputs
from significance.pipeline.scoring import field_metrics, tally, threshold_table


def test_threshold_table_counts_the_answers_left_and_their_accuracy():
    decisions = [(0.99, True), (0.85, True), (0.75, False), (0.4, False)]
    rows = {row["threshold"]: row for row in threshold_table(decisions)}
    assert (rows[0.0]["answered"], rows[0.0]["acc"]) == (4, 0.5)
    assert (rows[0.8]["answered"], rows[0.8]["coverage"], rows[0.8]["acc"]) == (2, 0.5, 1.0)
    assert (rows[0.99]["answered"], rows[0.99]["acc"]) == (1, 1.0)
    assert threshold_table([])[0] == {
        "threshold": 0.0,
        "answered": 0,
        "coverage": None,
        "acc": None,
    }


def test_error_sources_of_a_field_add_up():
    count = Counter()
    for field_right, routed_right in [(True, True), (False, True), (True, False), (False, False)]:
        tally(count, field_right, routed_right)
    values = field_metrics(count)
    assert values["acc_true_type"] == 0.5 and values["acc_end_to_end"] == 0.25
    assert (values["errors_wrong_type"], values["errors_field_model"]) == (2, 1)
    assert values["errors_wrong_type_field_model_right"] == 1


def write_summary(folder: Path, rows: list[tuple[str, str, str, str]]) -> None:
    with (folder / "summary.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["task", "status", "best_val_acc", "checkpoint"])
        writer.writerows(rows)


def test_from_sweep_takes_each_tasks_best_ok_checkpoint(tmp_path):
    rows = [
        ("artefact", "ok", "0.5", "a0.ckpt"),
        ("artefact", "ok", "0.7", "a1.ckpt"),
        ("artefact", "failed", "0.9", "a2.ckpt"),
        ("coins/material", "ok", "0.6", "c.ckpt"),
    ]
    write_summary(tmp_path, rows)
    spec = spec_from_sweep(tmp_path)
    assert spec == PipelineSpec(stage1="a1.ckpt", stage2={"coins": {"material": "c.ckpt"}})


def test_a_sweep_without_a_stage1_job_takes_one_named_and_says_so_otherwise(tmp_path):
    write_summary(tmp_path, [("coins/material", "ok", "0.6", "c.ckpt")])
    with pytest.raises(PipelineError, match="add task=artefact to the sweep, or name a stage-1"):
        spec_from_config({"from_sweep": str(tmp_path)})
    spec = spec_from_config({"from_sweep": str(tmp_path), "stage1": "mine.ckpt"})
    assert spec == PipelineSpec(stage1="mine.ckpt", stage2={"coins": {"material": "c.ckpt"}})


def test_inputs_from_folder_recursive_and_from_csv(tmp_path):
    for name in ("b/2.jpg", "a.png", ".hidden/x.jpg", "b/notes.txt", "b/1.JPG"):
        (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / name).touch()
    assert [
        Path(p).relative_to(tmp_path / "in").as_posix() for p in list_inputs(tmp_path / "in")
    ] == ["a.png", "b/1.JPG", "b/2.jpg"]
    (tmp_path / "in" / "list.csv").write_text("id,path\n1,b/2.jpg\n2,a.png\n")
    assert list_inputs(tmp_path / "in" / "list.csv") == [
        str(tmp_path / "in" / "b/2.jpg"),
        str(tmp_path / "in" / "a.png"),
    ]
