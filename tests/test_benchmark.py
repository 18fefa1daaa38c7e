"""The benchmark against the original training loop runs end to end (no timing asserted)."""

import csv
from pathlib import Path

from conftest import PROJECT_ROOT, assert_ok, run_script


def test_benchmark_runs_end_to_end_at_toy_scale(tmp_path: Path):
    out = tmp_path / "benchmark.csv"
    process = run_script(
        str(PROJECT_ROOT / "benchmarks" / "compare.py"),
        *("--images", "6", "--min-width", "120", "--image-size", "32", "--batch", "4"),
        *("--epochs", "1", "--repeats", "1", "--num-workers", "0", "--in-process"),
        *("--device", "cpu", "--workdir", str(tmp_path), "--out", str(out)),
        timeout=300,
    )
    assert_ok(process)
    with out.open() as handle:
        rows = {row["phase"]: row for row in csv.DictReader(handle)}
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
