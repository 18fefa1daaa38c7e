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
from significance.training.train import choose_resume


def test_the_settings_are_the_composed_config_less_where_and_how_fast(compose_train):
    settings = run_settings(compose_train("optimizer.lr=0.01", "data.num_workers=2"))
    assert settings["optimizer.lr"] == 0.01
    assert settings["data.seed"] == "${seed}"  # as composed: the same on every machine
    assert settings["task.classes"] == ["gold", "silver", "other"]
    for ignored in ("hydra", "paths", "logger", "resume", "group", "data.num_workers"):
        assert not any(key == ignored or key.startswith(ignored + ".") for key in settings)


def test_a_fresh_run_records_its_settings_and_a_rerun_with_others_is_refused(compose_train):
    cfg = compose_train("task=icons/location")
    run_dir = Path(cfg.hydra.runtime.output_dir)
    run_dir.mkdir(parents=True)
    task = Task.from_config(cfg.task)
    assert choose_resume(cfg, task, run_dir) is None  # nothing to resume: a fresh start
    assert json.loads((run_dir / SETTINGS_FILE).read_text()) == run_settings(cfg)

    (run_dir / LAST_CHECKPOINT).parent.mkdir()
    torch.save({"epoch": 1}, run_dir / LAST_CHECKPOINT)  # interrupted after a checkpoint
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
    assert json.loads((run_dir / SETTINGS_FILE).read_text())["optimizer.lr"] == 0.5


def test_only_a_run_to_continue_or_skip_is_checked_and_old_runs_are_not(compose_train):
    cfg = compose_train()
    run_dir = Path(cfg.hydra.runtime.output_dir)
    run_dir.mkdir(parents=True)
    (run_dir / SETTINGS_FILE).write_text(json.dumps({"optimizer.lr": 0.5, "gone.option": 1}))
    assert settings_conflict(run_dir, cfg) == ""  # no checkpoint, no result: nothing goes on
    (run_dir / RESULT_FILE).write_text(json.dumps({"status": "ok"}))
    assert "optimizer.lr: 0.5 -> 1e-05" in settings_conflict(run_dir, cfg)
    assert changed_settings(run_dir, cfg) == {"optimizer.lr": (0.5, 1e-05)}  # not gone.option
    (run_dir / SETTINGS_FILE).unlink()  # a run from before settings were kept
    assert settings_conflict(run_dir, cfg) == ""


def test_a_run_may_go_on_to_another_length_and_a_sweep_reruns_a_job_asked_for_more(compose_train):
    cfg = compose_train("task=icons/location")
    run_dir = Path(cfg.hydra.runtime.output_dir)
    run_dir.mkdir(parents=True)
    task = Task.from_config(cfg.task)
    choose_resume(cfg, task, run_dir)
    (run_dir / RESULT_FILE).write_text(json.dumps({"status": "ok"}))
    assert SweepJob(0, [], run_dir, cfg).finished_before  # the same again: skipped

    longer = compose_train("task=icons/location", "trainer.max_epochs=7")
    assert not settings_conflict(run_dir, longer)
    assert not SweepJob(0, [], run_dir, longer).finished_before  # run on, to 7 epochs
    (run_dir / LAST_CHECKPOINT).parent.mkdir()
    hyper_parameters = {"task": task.to_dict(), "model": {"name": "tiny_vgg"}}
    last = {"epoch": 1, "optimizer_states": [], "hyper_parameters": hyper_parameters}
    torch.save(last, run_dir / LAST_CHECKPOINT)
    assert choose_resume(longer, task, run_dir) == run_dir / LAST_CHECKPOINT
    # The run is now one of 7 epochs: the next rerun of the same length skips it.
    assert json.loads((run_dir / SETTINGS_FILE).read_text())["trainer.max_epochs"] == 7
    assert SweepJob(0, [], run_dir, longer).finished_before
