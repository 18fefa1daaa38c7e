"""The entry scripts' shared preamble: light until Hydra has composed, renamed settings, flags."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import PROJECT_ROOT
from hydra.errors import MissingConfigException

from significance.entry import one_line, updated_arguments
from significance.errors import ConfigurationError

# Runs an entry script as `python <script> <arguments>` would, then says whether torch loaded.
PROBE = """
import runpy, sys
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as exit:
    print("exit", exit.code)
print("torch loaded:", "torch" in sys.modules)
"""


def _probe(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", PROBE, *arguments],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "arguments",
    [
        ("train.py", "task=coins/materal"),
        ("train.py", "data.batchsize=3"),
        ("train.py", "optimizer.lr=0"),  # a value preflight refuses before torch loads
        ("train.py", "data.folds=3", "data.fold=3"),  # a fold that does not exist
        ("train.py", "--help"),
        ("evaluate.py", "--help"),
        ("predict.py", "--help"),
        ("audit.py", "--help"),
        ("report.py", "--help"),
    ],
)
def test_a_misspelt_setting_or_help_is_answered_without_torch(arguments):
    process = _probe(*arguments)
    assert "torch loaded: False" in process.stdout, process.stdout + process.stderr
    if "--help" not in arguments:
        assert "exit 1" in process.stdout
        assert process.stderr.strip().startswith("error: "), process.stderr


def test_a_misspelt_task_lists_the_tasks():
    process = _probe("train.py", "task=coins/materal")
    assert "coins/material" in process.stderr and "icons/location" in process.stderr


def test_renamed_settings_still_work_with_a_warning(capsys):
    old = ["cache_file=/x.sqlite", "+device=cpu", "ckpt=a.ckpt"]
    assert updated_arguments("evaluate", old) == [
        "facts_file=/x.sqlite",
        "+accelerator=cpu",
        "ckpt=a.ckpt",
    ]
    warnings = capsys.readouterr().err.splitlines()
    assert warnings == [
        "warning: cache_file is now facts_file; the old name goes in the next release",
        "warning: device is now accelerator; the old name goes in the next release",
    ]
    assert updated_arguments("train", ["data.cache_file=/x"]) == ["data.facts_file=/x"]
    assert updated_arguments("train", ["device=cpu"]) == ["device=cpu"]  # not a train setting


def test_flags_read_as_settings():
    assert updated_arguments("audit", ["--strict", "data.root=x"]) == ["strict=true", "data.root=x"]
    assert updated_arguments("train", ["--strict"]) == ["--strict"]


def test_short_names_read_as_their_settings(capsys):
    assert updated_arguments("enrich", ["review=r.csv", "review.size=5"]) == [
        "review.file=r.csv",
        "review.size=5",
    ]
    assert updated_arguments("train", ["review=r.csv"]) == ["review=r.csv"]
    assert capsys.readouterr().err == ""  # a short name is no deprecated one


def test_an_old_setting_name_reaches_the_script_renamed():
    process = _probe("evaluate.py", "cache_file=/nowhere/facts.sqlite", "ckpt=/nowhere/x.ckpt")
    assert "cache_file is now facts_file" in process.stderr
    assert "error: checkpoint /nowhere/x.ckpt not found" in process.stderr


def test_a_cause_the_message_already_quotes_is_not_repeated():
    error = ConfigurationError("cannot load the weights (URLError: offline). Put the file there")
    error.__cause__ = OSError("URLError: offline")
    assert one_line(error) == "cannot load the weights (URLError: offline). Put the file there"
    error.__cause__ = OSError("disk gone")
    assert one_line(error).endswith("Put the file there: disk gone")


def test_a_search_without_the_search_extra_says_how_to_install_it():
    missing = MissingConfigException(
        "Could not find 'hydra/sweeper/optuna'", missing_cfg_file="hydra/sweeper/optuna"
    )
    error = RuntimeError("Error composing the config")
    error.__cause__ = missing
    assert one_line(error).endswith("pip install -e '.[search]')")
