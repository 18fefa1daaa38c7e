"""The audit: every crafted kind of file reported with its reason, duplicates, leakage, strict."""

import csv
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest
from conftest import CONF_DIR, PROJECT_ROOT, TASK_IDS, assert_ok, run_script
from crafted_images import CRAFTED, TEST_PIXEL_LIMIT, make_crafted, noise
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from PIL import Image
from test_layout import _imports

from significance.audit_command import class_folder_task, smallest_unflagged_size, tasks_to_audit
from significance.data import scan
from significance.data.audit import AuditReport, Problem, audit_collection
from significance.data.collection import Sample
from significance.data.split import write_split
from significance.errors import CollectionError
from significance.reporting.audit_report import audit_markdown, audit_summary, write_audit
from significance.tasks import Task

MATERIAL = Task("coins/material", 2, "coins", "material", ("gold", "silver", "other"))


def write_table(root: Path, labels: dict[str, str]) -> None:
    with (root / "annotations.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "artwork_type", "material"])
        writer.writerows([path, "coins", label] for path, label in labels.items())


def make_collection(root: Path) -> dict[str, str]:
    """Distinct images per class, an exact copy, a resized relabelled copy, a stray file."""
    labels = {}
    for index, label in enumerate(["gold", "silver", "other"] * 3):
        noise(160, 120, 100 + index).save(root / f"{label}{index}.jpg", quality=90)
        labels[f"{label}{index}.jpg"] = label
    noise(256, 192, 7).save(root / "a.jpg", quality=90)
    shutil.copy(root / "a.jpg", root / "a_copy.jpg")
    Image.open(root / "a.jpg").resize((128, 96)).save(root / "a_small.jpg", quality=70)
    labels.update({"a.jpg": "gold", "a_copy.jpg": "gold", "a_small.jpg": "silver"})
    labels["gone.jpg"] = "gold"  # a row whose file is missing
    noise(64, 64, 99).save(root / "stray.png")  # a file no row refers to
    write_table(root, labels)
    return labels


def problems_of(report) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for problem in report.problems:
        found.setdefault(problem.path, set()).add(problem.problem)
    return found


def test_every_crafted_file_is_reported_with_its_reason(tmp_path, monkeypatch):
    labels = make_collection(tmp_path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", TEST_PIXEL_LIMIT)
    make_crafted(tmp_path / "odd")
    labels.update({f"odd/{name}": "gold" for name in CRAFTED})
    write_table(tmp_path, labels)
    report = audit_collection(tmp_path, "annotations", [MATERIAL], min_size=16)
    found = problems_of(report)
    for name, problem in CRAFTED.items():
        if problem is not None:
            assert problem in found.get(f"odd/{name}", set()), (name, found.get(f"odd/{name}"))
        else:
            assert found.get(f"odd/{name}", set()) <= {"small"}, name
    assert "file not found" in found["gone.jpg"]
    assert found["stray.png"] == {"unreferenced"}
    assert "small" in found["odd/palette.png"]  # 4x2 pixels, under min_size
    # Only readable images count: 3 gold + a.jpg + a_copy.jpg + the 10 crafted that decode.
    assert report.counts["coins/material"]["gold"] == 5 + 10
    md, table = write_audit(report, tmp_path / "out")
    assert "| coins | material | gold, silver, other |" in md.read_text()
    with table.open() as handle:
        assert next(csv.reader(handle)) == ["path", "problem", "detail"]


def test_duplicates_relabelled_copies_and_leakage_are_found(tmp_path):
    make_collection(tmp_path)
    split = tmp_path / "run" / "split.csv"
    parts = {"a.jpg": "train", "a_copy.jpg": "train", "a_small.jpg": "test"}
    samples = [Sample(path, "gold", path) for path in parts]
    write_split(split, samples, parts)
    report = audit_collection(tmp_path, "annotations", [MATERIAL], split_files=[split])
    found = problems_of(report)
    assert {"duplicate", "label conflict", "leakage"} <= found["a.jpg"]
    assert {"duplicate", "label conflict"} <= found["a_copy.jpg"]
    assert {"near-duplicate", "label conflict", "leakage"} <= found["a_small.jpg"]
    assert not any("duplicate" in kinds for path, kinds in found.items() if path[-5] in "012")
    assert report.leakage == {"run": 3}
    assert {p.problem for p in report.corrupting} == {"label conflict", "leakage"}


def test_a_second_audit_reads_the_hash_cache(tmp_path, monkeypatch):
    root, cache = tmp_path / "collection", tmp_path / "cache.sqlite"
    root.mkdir()
    make_collection(root)
    first = audit_collection(root, "annotations", [MATERIAL], facts_file=cache)
    calls, real_scan = [], scan.scan_file
    monkeypatch.setattr(scan, "scan_file", lambda path: calls.append(path) or real_scan(path))
    second = audit_collection(root, "annotations", [MATERIAL], facts_file=cache)
    assert calls == [root / "gone.jpg"]  # only the missing file is looked at again
    assert second.problems == first.problems


def test_table_paths_with_dot_and_backslash_name_the_files_on_disk(tmp_path):
    (tmp_path / "scans").mkdir()
    noise(240, 240, 1).save(tmp_path / "scans" / "a.jpg")
    noise(240, 240, 2).save(tmp_path / "b.jpg")
    write_table(tmp_path, {"./scans/a.jpg": "gold", "scans\\a.jpg": "gold", "./b.jpg": "silver"})
    report = audit_collection(tmp_path, "annotations", [MATERIAL])
    assert [problem for problem in report.problems if problem.path] == []  # no file's problem
    assert report.files == 2


def test_class_folders_too_small_and_missing_root(tmp_path):
    for seed, label in enumerate(MATERIAL.classes, start=100):
        (tmp_path / label).mkdir()
        noise(40, 40, seed).save(tmp_path / label / "x.png")
    noise(40, 40, 5).save(tmp_path / "gold" / "y.png")
    (tmp_path / "gold" / "photo.heic").write_bytes(b"\x00\x00\x00\x18ftypheic" + b"\x00" * 40)
    report = audit_collection(tmp_path, "folders", [MATERIAL], min_size=16)
    found = problems_of(report)
    assert found["gold/photo.heic"] == {"unreferenced"}
    small = [p.detail for p in report.problems if p.problem == "class too small"]
    assert len(small) == 3 and "'gold' has 2 readable" in " ".join(small)
    with pytest.raises(CollectionError, match="is not a folder"):
        audit_collection(tmp_path / "nowhere", "folders", [MATERIAL])


def test_audit_script_writes_its_report_and_strict_fails_on_conflicts(tmp_path):
    make_collection(tmp_path)
    arguments = [
        "audit.py",
        f"data.root={tmp_path}",
        "task=coins/material",
        f"data.facts_file={tmp_path / 'cache.sqlite'}",
        f"hydra.run.dir={tmp_path / 'out'}",
    ]
    process = run_script(*arguments)
    assert_ok(process)
    assert "label conflict" in process.stdout and "| coins | material |" in process.stdout
    assert (tmp_path / "out" / "audit.md").is_file() and (tmp_path / "out" / "audit.csv").is_file()
    strict = run_script(*arguments, "--strict")
    assert strict.returncode == 1, strict.stderr[-2000:]
    missing = run_script(
        "audit.py", f"data.root={tmp_path / 'nowhere'}", f"hydra.run.dir={tmp_path / 'out2'}"
    )
    assert missing.returncode == 2 and "is not a folder" in missing.stderr


def test_the_report_renders_every_problem_and_the_leakage():
    report = AuditReport(Path("/museum"), "annotations", files=3)
    report.tasks[MATERIAL.id] = MATERIAL
    report.counts[MATERIAL.id] = Counter(gold=10, silver=10, other=2)
    report.problems = [
        Problem("a.jpg", "label conflict", "task coins/material: a.jpg=gold, b.jpg=silver"),
        Problem("c.jpg", "truncated", "image file is truncated | 29 bytes"),
        Problem("a.jpg", "leakage", "run: a.jpg (train), b.jpg (test)"),
    ]
    report.leakage["run"] = 1
    markdown = audit_markdown(report)
    assert markdown.startswith("# Audit of `/museum` (annotations)\n\n3 files scanned.\n")
    assert "| coins | material | gold, silver, other | 22 / 16 / 2 / 4 |" in markdown
    assert "| gold 10, silver 10, other 2 | other (2 < 3) |" in markdown
    assert "| label conflict | 1 | yes |" in markdown and "| truncated | 1 |  |" in markdown
    assert "| run | 1 |" in markdown.split("## Leakage")[1]
    assert "| c.jpg | truncated | image file is truncated / 29 bytes |" in markdown
    summary = audit_summary(report)
    assert "     1  leakage  (corrupts training or evaluation)" in summary
    assert summary.endswith("leakage in run: 1 images") and "| coins | material |" in summary
    assert "None found." in audit_markdown(AuditReport(Path("/museum"), "folders"))
    assert audit_summary(AuditReport(Path("/museum"), "folders")).endswith("No problems found.")


def test_the_audit_reads_no_config_and_no_model():
    imported = _imports(PROJECT_ROOT / "src" / "significance" / "data" / "audit.py")
    assert not {m for m in imported if m.startswith(("significance.config", "significance.models"))}


def compose_audit(*overrides: str):
    """`conf/audit.yaml` composed as `audit.py` composes it, with its Hydra node."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("audit", overrides=list(overrides), return_hydra_config=True)


def test_the_command_audits_every_configured_task_or_the_class_folders(tmp_path):
    assert [task.id for task in tasks_to_audit(compose_audit(), tmp_path)] == TASK_IDS
    assert tasks_to_audit(compose_audit("task=coins/material"), tmp_path) == [MATERIAL]
    for name in ("gold", "silver", ".ipynb_checkpoints"):
        (tmp_path / name).mkdir()
    (folders,) = tasks_to_audit(compose_audit("data=folders"), tmp_path)
    assert folders.classes == ("gold", "silver")
    (tmp_path / "silver").rmdir()
    with pytest.raises(CollectionError, match="1 class folder"):
        class_folder_task(tmp_path)
    with pytest.raises(CollectionError, match="is not a folder"):
        class_folder_task(tmp_path / "nowhere")
    GlobalHydra.instance().clear()


def test_images_under_the_model_input_are_small():
    assert smallest_unflagged_size(compose_audit()) == 224
    assert smallest_unflagged_size(compose_audit("min_size=100")) == 100
    assert smallest_unflagged_size(compose_audit("model=tiny_vgg")) == 32
    # null: the size the weights of the model expect.
    assert smallest_unflagged_size(compose_audit("model=resnet50")) == 224
    GlobalHydra.instance().clear()


@pytest.mark.parametrize("script", ["audit.py", "report.py"])
def test_help_answers_before_torch_is_imported(script):
    process = run_script("-X", "importtime", script, "--help")
    assert_ok(process)
    assert "== Config ==" in process.stdout
    assert not re.search(r"\|\s+(torch|lightning)$", process.stderr, re.M)
