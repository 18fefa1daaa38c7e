"""A run folder keeps the settings its figures depend on; continuing it with others is refused."""

import json
from pathlib import Path

import pytest
import torch

from hydra_plugins.significance_launcher.sweep_record import SweepJob
from significance.errors import ResumeError
from significance.run_files import LAST_CHECKPOINT, RESULT_FILE, SETTINGS_FILE
from significance.run_settings import changed_settings, run_settings, settings_conflict
from significance.tasks import Task
from significance.training.checkpoints import choose_resume


def started_run(compose_train, *overrides: str) -> tuple:
    """A run folder as a fresh run of `overrides` leaves it, with a last checkpoint."""
    cfg = compose_train("task=icons/location", *overrides)
    run_dir = Path(cfg.hydra.runtime.output_dir)
    run_dir.mkdir(parents=True)
    task = Task.from_config(cfg.task)
    assert choose_resume(cfg, task, run_dir) is None  # nothing to resume: a fresh start
    (run_dir / LAST_CHECKPOINT).parent.mkdir()
    hyper_parameters = {"task": task.to_dict(), "model": {"name": "tiny_vgg"}}
    last = {"epoch": 1, "optimizer_states": [], "hyper_parameters": hyper_parameters}
    torch.save(last, run_dir / LAST_CHECKPOINT)
    return run_dir, task


def test_the_settings_are_the_composed_config_less_where_and_how_fast(compose_train):
    settings = run_settings(compose_train("optimizer.lr=0.01", "data.num_workers=2"))
    assert settings["optimizer"]["lr"] == 0.01
    assert settings["data"]["seed"] == "${seed}"  # as composed: the same on every machine
    assert settings["task"]["classes"] == ["gold", "silver", "other"]
    for ignored in ("hydra", "paths", "logger", "resume", "group"):
        assert ignored not in settings
    assert "num_workers" not in settings["data"] and "last_checkpoint" not in settings["callbacks"]


def test_a_fresh_run_records_its_settings_and_a_rerun_with_others_is_refused(compose_train):
    run_dir, task = started_run(compose_train)
    cfg = compose_train("task=icons/location")
    assert json.loads((run_dir / SETTINGS_FILE).read_text()) == run_settings(cfg)
    other = compose_train("task=icons/location", "optimizer.lr=0.5", "seed=3")
    with pytest.raises(ResumeError) as refused:
        choose_resume(other, task, run_dir)
    message = str(refused.value)
    assert "optimizer.lr: 1e-05 -> 0.5" in message and "seed: 0 -> 3" in message
    assert "resume=false" in message
    # Where and how fast it runs may change: the same run goes on.
    assert not settings_conflict(run_dir, compose_train("task=icons/location", "data.cache=false"))
    # resume=false starts afresh there, and records the new settings.
    afresh = compose_train("task=icons/location", "optimizer.lr=0.5", "resume=false")
    assert choose_resume(afresh, task, run_dir) is None
    assert json.loads((run_dir / SETTINGS_FILE).read_text())["optimizer"]["lr"] == 0.5


@pytest.mark.parametrize(
    "override, named",
    [
        ("scheduler=cosine", "scheduler: null -> {"),  # a group set where it was null
        ("callbacks.best_checkpoint=null", "callbacks.best_checkpoint: {"),
        ("+trainer.gradient_clip_val=1.0", "trainer.gradient_clip_val: (absent) -> 1.0"),
        ("loss.class_weights={gold:5}", 'loss.class_weights: "none" -> {"gold": 5}'),
        ("trainer.max_epochs=1", "trainer.max_epochs: 2 -> 1"),  # longer, never shorter
    ],
)
def test_settings_added_removed_or_shortened_are_changes_too(compose_train, override, named):
    run_dir, _ = started_run(compose_train)
    assert named in settings_conflict(run_dir, compose_train("task=icons/location", override))


def test_only_a_run_to_continue_or_skip_is_checked_and_old_runs_are_not(compose_train):
    cfg = compose_train()
    run_dir = Path(cfg.hydra.runtime.output_dir)
    run_dir.mkdir(parents=True)
    settings = run_settings(cfg)
    settings["optimizer"]["lr"] = 0.5
    (run_dir / SETTINGS_FILE).write_text(json.dumps(settings))
    assert settings_conflict(run_dir, cfg) == ""  # no checkpoint, no result: nothing goes on
    (run_dir / RESULT_FILE).write_text(json.dumps({"status": "ok"}))
    assert "optimizer.lr: 0.5 -> 1e-05" in settings_conflict(run_dir, cfg)
    assert changed_settings(run_dir, cfg) == {"optimizer.lr": (0.5, 1e-05)}
    (run_dir / SETTINGS_FILE).unlink()  # a run from before settings were kept
    assert settings_conflict(run_dir, cfg) == ""


def test_a_run_may_go_on_to_more_epochs_and_a_sweep_reruns_a_job_asked_for_more(compose_train):
    run_dir, task = started_run(compose_train)
    cfg = compose_train("task=icons/location")
    (run_dir / RESULT_FILE).write_text(json.dumps({"status": "ok", "epochs": 2}))
    assert SweepJob(0, [], run_dir, cfg).finished_before  # the same again: skipped

    longer = compose_train("task=icons/location", "trainer.max_epochs=7")
    assert not settings_conflict(run_dir, longer)
    assert not SweepJob(0, [], run_dir, longer).finished_before  # run on, to 7 epochs
    assert choose_resume(longer, task, run_dir) == run_dir / LAST_CHECKPOINT
    # A run of 7 epochs now, unfinished: killed before its end, it is not taken as finished.
    assert json.loads((run_dir / SETTINGS_FILE).read_text())["trainer"]["max_epochs"] == 7
    assert not (run_dir / RESULT_FILE).exists()
    assert not SweepJob(0, [], run_dir, longer).finished_before
