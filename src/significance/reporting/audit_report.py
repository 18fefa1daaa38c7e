"""An audit's report (`significance.data.audit.AuditReport`) as audit.md, audit.csv and a summary.

audit.md is for people (counts per task and class, problem counts, leakage, every problem),
audit.csv for tools (one row per problem), the summary for the terminal.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

from significance.data.audit import CORRUPTING, AuditReport, expected_split_sizes
from significance.data.images import load_image
from significance.data.label_issues import LabelIssue
from significance.data.split import minimum_class_size
from significance.errors import UnreadableImageError
from significance.reporting.tables import markdown_table, write_rows_csv

AUDIT_FILE = "audit.md"
AUDIT_CSV = "audit.csv"
AUDIT_COLUMNS = ("path", "problem", "detail")
LABEL_ISSUES_CSV = "label_issues.csv"
LABEL_ISSUE_COLUMNS = ("task", "rank", "path", "label", "suggested", "p_suggested", "p_label")
THUMBNAILS = "thumbnails"
THUMBNAIL_SIZE = 96
# audit.md shows the most doubtful labels of each task; label_issues.csv lists them all.
SHOWN_PER_TASK = 25
CORRUPTS = "corrupts training or evaluation"
# The study's cardinality table (dataset.png), with the classes a split cannot be made of.
COUNTS_HEADER = (
    "artwork type",
    "field",
    "classes",
    "images total / train / val / test",
    "per class",
    "too small to split",
)


def counts_table(report: AuditReport) -> str:
    """Readable images per task and class, and how a split would share them out."""
    return markdown_table(
        COUNTS_HEADER, [_counts_row(report, task_id) for task_id in report.counts]
    )


def _counts_row(report: AuditReport, task_id: str) -> list[str]:
    """One task's row of the counts table."""
    task, counts = report.tasks[task_id], report.counts[task_id]
    parts: Counter = Counter()
    for label in task.classes:
        parts.update(expected_split_sizes(counts[label], report.test_fraction, report.val_fraction))
    minimum = minimum_class_size(report.val_fraction)
    small = [
        f"{label} ({counts[label]} < {minimum})"
        for label in task.classes
        if counts[label] < minimum
    ]
    return [
        task.artwork_type or "(stage 1)",
        task.field,
        ", ".join(task.classes),
        f"{sum(counts[label] for label in task.classes)} / "
        f"{parts['train']} / {parts['val']} / {parts['test']}",
        ", ".join(f"{label} {counts[label]}" for label in task.classes),
        ", ".join(small),
    ]


def audit_markdown(report: AuditReport, thumbnails: Mapping[str, str] | None = None) -> str:
    """audit.md: counts table, problem counts, leakage, doubtful labels, every problem."""
    sections = [
        f"# Audit of `{report.root}` ({report.layout})",
        f"{report.files} files scanned.",
        "## Images per task and class (readable images; train / val / test as a split with "
        f"test {report.test_fraction}, val {report.val_fraction} would give)",
        counts_table(report),
        "## Problems",
        _problem_counts_table(report) if report.problems else "None found.",
    ]
    if report.leakage:
        sections += [
            "## Leakage: copies of one image on both sides of train / test",
            markdown_table(("split file", "images"), sorted(report.leakage.items())),
        ]
    if report.label_issues:
        sections += [label_issues_section(report.label_issues, thumbnails or {})]
    if report.problems:
        rows = [(p.path, p.problem, p.detail.replace("|", "/")) for p in report.problems]
        sections += ["## Every problem (also in audit.csv)", markdown_table(AUDIT_COLUMNS, rows)]
    return "\n\n".join(sections) + "\n"


def label_issues_section(issues: list[LabelIssue], thumbnails: Mapping[str, str]) -> str:
    """The labels that out-of-fold predictions doubt most, per task, with thumbnails."""
    shown = [issue for issue in issues if issue.rank <= SHOWN_PER_TASK]
    rows = [
        (
            issue.task,
            issue.rank,
            f"![]({thumbnails[issue.path]})" if issue.path in thumbnails else "",
            issue.path,
            issue.label,
            issue.suggested,
            issue.p_suggested,
            issue.p_label,
        )
        for issue in shown
    ]
    header = ("task", "rank", "image", "path", "label", "suggested", "p(suggested)", "p(label)")
    return (
        f"## Labels the cross-validated models doubt ({len(issues)}; also in "
        f"{LABEL_ISSUES_CSV})\n\nFound by cleanlab's confident learning on out-of-fold "
        f"probabilities, most doubtful first; the first {SHOWN_PER_TASK} of each task:\n\n"
        + markdown_table(header, rows)
    )


def write_thumbnails(root: Path, issues: list[LabelIssue], output_dir: Path) -> dict[str, str]:
    """Small JPEGs of the images audit.md shows, `{path: thumbnail relative to output_dir}`."""
    written = {}
    (output_dir / THUMBNAILS).mkdir(exist_ok=True)
    for issue in (issue for issue in issues if issue.rank <= SHOWN_PER_TASK):
        name = hashlib.sha1(issue.path.encode()).hexdigest()[:16] + ".jpg"
        try:
            image = load_image(root / issue.path)
        except (OSError, UnreadableImageError):
            continue  # audit.md lists it without a picture
        image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
        image.save(output_dir / THUMBNAILS / name, quality=85)
        written[issue.path] = f"{THUMBNAILS}/{name}"
    return written


def _problem_counts_table(report: AuditReport) -> str:
    """How many problems of each kind, and which kinds corrupt training or evaluation."""
    rows = [
        (kind, count, "yes" if kind in CORRUPTING else "")
        for kind, count in sorted(report.problem_counts.items())
    ]
    return markdown_table(("problem", "files", CORRUPTS), rows)


def audit_summary(report: AuditReport) -> str:
    """What `audit.py` prints: the counts table and the number of each problem."""
    flag = f"  ({CORRUPTS})"
    lines = [
        f"{count:6d}  {kind}{flag if kind in CORRUPTING else ''}"
        for kind, count in sorted(report.problem_counts.items())
    ] or ["No problems found."]
    lines += [
        f"leakage in {name}: {count} images" for name, count in sorted(report.leakage.items())
    ]
    if report.label_issues:
        lines.append(f"{len(report.label_issues):6d}  labels doubted by out-of-fold predictions")
    return "\n".join([counts_table(report), "", *lines])


def write_audit(report: AuditReport, output_dir: str | Path) -> tuple[Path, Path]:
    """Write audit.md and audit.csv into `output_dir`; return their paths."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    markdown, table = output_dir / AUDIT_FILE, output_dir / AUDIT_CSV
    thumbnails = {}
    if report.label_issues:
        thumbnails = write_thumbnails(Path(report.root), report.label_issues, output_dir)
        issues = [asdict(issue) for issue in report.label_issues]
        write_rows_csv(output_dir / LABEL_ISSUES_CSV, LABEL_ISSUE_COLUMNS, issues)
    markdown.write_text(audit_markdown(report, thumbnails))
    write_rows_csv(table, AUDIT_COLUMNS, [asdict(problem) for problem in report.problems])
    return markdown, table
