"""`audit.py`: audit the collection that the config names, write its report, the exit code.

The config chooses the collection, the tasks and the smallest image size that is not flagged;
`significance.data.audit` audits, `significance.reporting.audit_report` writes audit.md and
audit.csv.
"""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig

from significance.config import configured_tasks
from significance.data.audit import (
    AuditReport,
    audit_collection,
    check_collection,
    find_split_files,
)
from significance.data.demo import demo_spec, ensure_demo_collection
from significance.data.images import is_hidden
from significance.data.label_issues import find_label_issues, read_oof_predictions
from significance.errors import CollectionError, InputError
from significance.models.build import preprocessing_for
from significance.reporting.audit_report import audit_summary, write_audit
from significance.tasks import Task

EXIT_OK = 0
EXIT_CORRUPTING = 1  # --strict, and something would corrupt training or evaluation
EXIT_UNAUDITABLE = 2  # no such collection folder, no tasks, no such split file


def run_audit(cfg: DictConfig) -> int:
    """Audit, write audit.md and audit.csv, print the summary; return the exit code.

    1 when `cfg.strict` and something would corrupt training or evaluation, 2 when the
    collection cannot be audited at all (no such folder, no tasks), else 0.
    """
    try:
        report = audit_configured_collection(cfg)
    except (CollectionError, InputError) as error:
        print(f"audit: {error}", file=sys.stderr)
        return EXIT_UNAUDITABLE
    markdown, table = write_audit(report, cfg.paths.output_dir)
    print(audit_summary(report))
    print(f"\nWritten {markdown} and {table}")
    if cfg.strict and report.corrupting:
        print(
            f"strict: {len(report.corrupting)} problem(s) would corrupt training or evaluation",
            file=sys.stderr,
        )
        return EXIT_CORRUPTING
    return EXIT_OK


def audit_configured_collection(cfg: DictConfig) -> AuditReport:
    """The audit of `data.root` (the demo collection if null) as `cfg` configures it."""
    data = cfg.data
    root = collection_root(data)
    report = audit_collection(
        root,
        data.layout,
        tasks_to_audit(cfg, root),
        annotations_file=data.annotations_file,
        facts_file=data.facts_file,
        duplicate_distance=data.duplicate_distance,
        min_size=smallest_unflagged_size(cfg),
        split_files=find_split_files(cfg.split_file),
        test_fraction=data.test_fraction,
        val_fraction=data.val_fraction,
    )
    if cfg.get("label_issues"):
        report.label_issues = find_label_issues(read_oof_predictions(cfg.label_issues))
    return report


def collection_root(data: DictConfig) -> Path:
    """`data.root`, or (null) the demo collection, generated on first use."""
    if data.root:
        return Path(data.root)
    return ensure_demo_collection(data.demo_dir, spec=demo_spec(data.get("demo_scale", "demo")))


def smallest_unflagged_size(cfg: DictConfig) -> int:
    """`min_size`, or (null) the input size that the configured model's weights expect."""
    if cfg.min_size:
        return int(cfg.min_size)
    return preprocessing_for(cfg.model.name, None, cfg.model.weights).image_size


def tasks_to_audit(cfg: DictConfig, root: Path) -> list[Task]:
    """`task=...` if given; else every task of the config (annotations) or the class folders."""
    if cfg.get("task"):
        return [Task.from_config(cfg.task)]
    if cfg.data.layout == "annotations":
        return configured_tasks(cfg)
    return [class_folder_task(root)]


def class_folder_task(root: Path) -> Task:
    """The task whose classes are the visible folders of `root` (two at least)."""
    check_collection(root, "folders")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not is_hidden(p.name))
    if len(folders) < 2:
        raise CollectionError(f"{root} has {len(folders)} class folder(s); a task needs two")
    return Task("folders", 1, None, "class", tuple(folders))
