"""The benchmark against the original training loop runs end to end (no timing asserted)."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT, assert_ok, run_script


def test_benchmark_runs_end_to_end_at_toy_scale(tmp_path: Path):
    out = tmp_path / "benchmark.csv"
    process = run_script(
        str(PROJECT_ROOT / "benchmarks" / "compare.py"),
        *("--images", "6", "--min-width", "120", "--image-size", "32", "--batch", "4"),
        *("--epochs", "1", "--repeats", "1", "--num-workers", "0", "--in-process"),
        *("--device", "cpu", "--workdir", str(tmp_path), "--out", str(out)),
        *("--eval-batch", "3", "--channels-last"),
        timeout=300,
    )
    assert_ok(process)
    with out.open() as handle:
        rows = {row["phase"]: row for row in csv.DictReader(handle)}
    assert (rows["train"]["batch"], rows["evaluate"]["batch"]) == ("4", "3")
    assert rows["train"]["channels_last_ours"] == "True"
    assert list(rows) == ["cache_build", "pipeline", "train", "evaluate"]
    for phase in ("pipeline", "train", "evaluate"):
        assert float(rows[phase]["ours_images_per_s"]) > 0
        assert float(rows[phase]["original_images_per_s"]) > 0
        assert float(rows[phase]["ratio_ours_over_original"]) > 0
    assert int(rows["train"]["images"]) == 6


def test_options_timer_writes_a_row_per_variant(tmp_path: Path):
    out = tmp_path / "options.csv"
    process = run_script(
        str(PROJECT_ROOT / "benchmarks" / "options.py"),
        *("--models", "tiny_vgg:32", "--variants", "fp32", "fused_adam", "--batch", "4"),
        *("--rounds", "1", "--steps", "1", "--device", "cpu", "--out", str(out)),
        timeout=300,
    )
    assert_ok(process)
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["variant"] for row in rows] == ["fp32", "fused_adam"]
    assert rows[0]["speedup_vs_fp32"] == "1.0" and float(rows[1]["step_s"]) > 0


@pytest.mark.slow
def test_the_gpu_checks_script_runs_whole_at_toy_scale_on_a_cpu(tmp_path: Path):
    out = tmp_path / "gpu"
    process = subprocess.run(
        ["bash", str(PROJECT_ROOT / "benchmarks" / "gpu_checks.sh")],
        env={**os.environ, "TOY": "1", "OUT": str(out), "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    made = {path.name for path in out.iterdir() if path.is_file()}
    assert {"options.csv", "benchmark.csv", "sweep_time.csv", "sweep_summary.csv"} <= made
    with (out / "sweep_summary.csv").open() as handle:
        assert {row["status"] for row in csv.DictReader(handle)} == {"ok"}
