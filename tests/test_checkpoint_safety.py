"""Checkpoints: payloads that would run code, truncated files, misfits, a full disk."""

import errno
from pathlib import Path

import pytest
import torch
from conftest import FAST, run_script

from significance.errors import CheckpointError, CheckpointSaveError, ResumeError
from significance.models.module import ArtworkClassifier, load_classifier
from significance.tasks import Task
from significance.training.checkpoints import AtomicCheckpointIO, check_resumable


class WritesAFile:
    """A pickle payload: unpickling it creates a file (as any code could run)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def small_checkpoint(task_id: str = "icons/location", classes=("cyprus", "other")) -> dict:
    """A real checkpoint's contents: tiny model, plain hyperparameters."""
    model = ArtworkClassifier(
        task={"id": task_id, "stage": 2, "artwork_type": "x", "field": "y", "classes": classes},
        model={"name": "tiny_vgg", "pretrained": False},
        optimizer={"lr": 1e-3},
        preprocessing={"image_size": 32, "mean": [0.5] * 3, "std": [0.5] * 3},
    )
    return {
        "epoch": 3,
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "optimizer_states": [],
    }


def test_a_checkpoint_whose_payload_would_run_code_is_refused_and_never_runs(
    tmp_path: Path, demo_dir: Path
):
    marker = tmp_path / "payload-ran"
    checkpoint = small_checkpoint()
    checkpoint["hyper_parameters"]["seed"] = WritesAFile(marker)
    evil = tmp_path / "evil.ckpt"
    torch.save(checkpoint, evil)

    evaluated = run_script("evaluate.py", f"ckpt={evil}", f"hydra.run.dir={tmp_path / 'eval'}")
    assert evaluated.returncode == 1
    last_line = evaluated.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"error: refused to load {evil}")
    assert not marker.exists()

    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(evil.read_bytes())
    resumed = run_script("train.py", *FAST, f"data.demo_dir={demo_dir}", f"hydra.run.dir={run_dir}")
    assert resumed.returncode == 1 and "error: refused to load" in resumed.stderr
    assert not marker.exists()

    # The payload is live: an unsafe load would have run it.
    torch.load(evil, weights_only=False)
    assert marker.exists()


def test_a_truncated_checkpoint_gets_a_message_not_a_traceback(tmp_path: Path):
    whole = tmp_path / "whole.ckpt"
    torch.save(small_checkpoint(), whole)
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    process = run_script("evaluate.py", f"ckpt={cut}", f"hydra.run.dir={tmp_path / 'eval'}")
    assert process.returncode == 1
    assert "Traceback" not in process.stderr
    assert (
        process.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: cannot read checkpoint {cut}: truncated or not a checkpoint")
    )


def test_an_unknown_architecture_or_a_class_list_that_does_not_fit_is_named(tmp_path: Path):
    unknown = small_checkpoint()
    unknown["hyper_parameters"]["model"] = {"name": "no_such_net", "pretrained": False}
    torch.save(unknown, tmp_path / "unknown.ckpt")
    with pytest.raises(CheckpointError, match="architecture 'no_such_net'"):
        load_classifier(tmp_path / "unknown.ckpt")
    misfit = small_checkpoint()
    misfit["hyper_parameters"]["task"]["classes"] = ("a", "b", "c")
    torch.save(misfit, tmp_path / "misfit.ckpt")
    with pytest.raises(CheckpointError, match=r"3 classes \['a', 'b', 'c'\]"):
        load_classifier(tmp_path / "misfit.ckpt")


def test_resuming_from_a_checkpoint_of_another_task_class_list_or_model_is_refused(
    tmp_path: Path,
):
    path = tmp_path / "last.ckpt"
    torch.save(small_checkpoint(), path)
    task = Task.from_config(small_checkpoint()["hyper_parameters"]["task"])
    assert check_resumable(path, task, "tiny_vgg") == 3
    other_task = Task.from_config({**task.to_dict(), "id": "coins/period"})
    with pytest.raises(ResumeError, match="trained for task 'icons/location'"):
        check_resumable(path, other_task, "tiny_vgg")
    other_classes = Task.from_config({**task.to_dict(), "classes": ["cyprus", "greece"]})
    with pytest.raises(ResumeError, match="classes"):
        check_resumable(path, other_classes, "tiny_vgg")
    with pytest.raises(ResumeError, match="'tiny_vgg' model, this run builds 'vgg16'"):
        check_resumable(path, task, "vgg16")


def test_a_full_disk_while_saving_keeps_the_last_good_checkpoint(tmp_path: Path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"epoch": 1}, path)

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(CheckpointSaveError, match=r"the disk is full; the previous last\.ckpt"):
        io.save_checkpoint({"epoch": 2}, path)
    monkeypatch.undo()
    assert io.load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary left behind
