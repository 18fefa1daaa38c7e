"""The package's shape: imports point one way, the config layer is light, errors have one base."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from significance import errors
from significance.entry import one_line, user_errors

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "significance"
# Lower layers never import higher ones; modules of one layer may import each other.
LAYERS = {
    "errors": 0,
    "files": 0,
    "run_files": 0,
    "tasks": 0,
    "hardware": 0,
    "config": 0,
    "process_groups": 0,
    "search": 0,
    "run_settings": 0,
    "data": 1,
    "models": 2,
    "reporting": 3,
    "checkpoint_evaluation": 4,
    "training": 5,
    "pipeline": 5,
    "catalogue": 6,  # the pipeline over a catalogue table: enrich, review, merge back
    "entry": 6,
    "audit_command": 6,
}
# Peers that must not know each other: training never runs a pipeline, nor the reverse.
SEPARATE = {("training", "pipeline"), ("pipeline", "training")}


def _part(module: str) -> str:
    """The layer name of `significance.<part>...`."""
    return module.split(".")[1]


def _imports(path: Path) -> set[str]:
    """Every `significance.*` module that a file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("significance.")}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py")


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_only_point_down(path: Path):
    here = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    assert here in LAYERS, f"{here} has no layer in this test: add it where it belongs"
    for module in _imports(path):
        there = _part(module)
        assert LAYERS[there] <= LAYERS[here], f"{here} (layer {LAYERS[here]}) imports {module}"
        assert (here, there) not in SEPARATE, f"{here} imports {module}"


def test_resolving_a_config_or_writing_a_sweep_report_imports_neither_torch_nor_lightning():
    # Every sweep launcher writes results.md; torch would add seconds to each sweep.
    code = (
        "import sys, significance.config, significance.entry, significance.tasks\n"
        "import significance.reporting.sweep, hydra_plugins.significance_launcher.sweep_record\n"
        "print(sorted(m for m in ('torch', 'lightning', 'torchvision') if m in sys.modules))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert output.strip() == "[]"


def _error_classes() -> list[type[errors.SignificanceError]]:
    found, todo = [], [errors.SignificanceError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda cls: cls.__name__)
def test_every_user_error_ends_in_one_line(cls: type[errors.SignificanceError]):
    assert issubclass(cls, user_errors())
    error = cls("the first line says what to do\nand more detail below")
    assert one_line(error) == "the first line says what to do"


def test_every_error_class_is_made_somewhere():
    plugins = PACKAGE.parent / "hydra_plugins"
    files = [*_modules(), *plugins.rglob("*.py")]
    source = "\n".join(path.read_text() for path in files if path.name != "errors.py")
    never = [
        cls.__name__
        for cls in _error_classes()
        if cls is not errors.SignificanceError and f"{cls.__name__}(" not in source
    ]
    assert not never, f"error classes nothing makes: {never}"
