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
