"""Evaluating a checkpoint on one device: the test split its run recorded, or another collection."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch

from significance.data.collection import table_path
from significance.data.datamodule import ArtworkDataModule, LoaderSettings
from significance.data.images import file_sha256
from significance.data.run_split import CollectionSettings, make_split
from significance.data.split import read_split
from significance.errors import CheckpointError
from significance.files import write_json
from significance.models.calibration import calibration_errors, negative_log_likelihood
from significance.models.module import ArtworkClassifier, load_classifier
from significance.reporting.checkpoint_report import write_evaluation_report
from significance.run_files import METRICS_FILE, REPORT_FILE, SPLIT_FILE

log = logging.getLogger(__name__)


def evaluate_checkpoint(
    ckpt: str | Path,
    output_dir: str | Path,
    data: dict[str, Any] | None = None,
    split_file: str | Path | None = None,
    batch_size: int = 64,
    num_workers: int | str = "auto",
    accelerator: str = "auto",
    cache_dir: str | Path | None = None,
    facts_file: str | Path | None = None,
    exclude_seen: bool = True,
    calibrated: bool = True,
) -> dict[str, Any]:
    """Test `ckpt` on a single device, write `metrics.json` into `output_dir`, return the metrics.

    Without `data.root`, the images are the test split that the training run wrote down
    (`split_file`, by default the one its checkpoint names). With `data.root`, every labelled
    image of that collection for the checkpoint's task is used instead, less those the model
    trained or validated on, matched by content (`exclude_seen`; `seen_images`). With `cache_dir`,
    decoded images are read from (and added to) the image cache there; with `facts_file`, the
    facts of scanned files (see `index_collection`). Probabilities use the checkpoint's
    temperature unless not `calibrated` (`calibration=none`).
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model = load_classifier(ckpt, calibrated=calibrated)
    excluded = 0
    if (data or {}).get("root"):
        collection = CollectionSettings.from_config(data, facts_file)
        split_file = output_dir / SPLIT_FILE
        excluded = split_other_collection(split_file, collection, ckpt, model, exclude_seen)
    else:
        collection = CollectionSettings.from_config(model.hparams.get("data") or {})
        split_file = Path(split_file or recorded_split_file(ckpt, model))
    loader = loader_settings(batch_size, num_workers, cache_dir)
    datamodule = ArtworkDataModule(
        model.task, model.preprocessing, split_file, collection, loader=loader
    )
    metrics = run_test(model, datamodule, accelerator)
    metrics.update(calibration_metrics(model))
    metrics.update(
        checkpoint=str(Path(ckpt).resolve()),
        task=model.task.id,
        data_root=str(collection.root),
        split_file=str(split_file),
        excluded_seen=excluded,
    )
    write_json(output_dir / METRICS_FILE, metrics)
    report_test(output_dir, model, datamodule, metrics)
    return metrics


def report_test(
    output_dir: Path, model: ArtworkClassifier, datamodule: ArtworkDataModule, metrics: dict
) -> None:
    """Write the test's report (`report.md` and its tables) and print its table."""
    logits = torch.cat(model.test_logits)
    # The test loader keeps the dataset's order: prediction i is test sample i.
    table = write_evaluation_report(
        output_dir,
        model.task,
        datamodule.datasets["test"].samples,
        model.probabilities(logits),
        torch.cat(model.test_targets),
        metrics,
        uncalibrated=logits.softmax(dim=1) if model.calibration.temperature != 1 else None,
    )
    print(table)
    print(f"Report: {output_dir / REPORT_FILE}")


def calibration_metrics(model: ArtworkClassifier) -> dict[str, Any]:
    """The test's expected calibration error and NLL at the model's temperature, and before."""
    logits, targets = torch.cat(model.test_logits), torch.cat(model.test_targets)
    temperature = model.calibration.temperature
    before, after = calibration_errors(logits, targets, temperature)
    return {
        "test/ece": before,
        "test/ece_calibrated": after,
        "test/loss_calibrated": negative_log_likelihood(logits, targets, temperature),
        "calibration": model.calibration.to_dict(),
    }


def loader_settings(
    batch_size: int, num_workers: int | str, cache_dir: str | Path | None
) -> LoaderSettings:
    """Evaluation loaders; with `cache_dir`, decoded images are read from the cache there."""
    cache = Path(cache_dir or LoaderSettings.cache_dir)
    return LoaderSettings(batch_size, num_workers, cache=cache_dir is not None, cache_dir=cache)


def validation_logits(
    ckpt: str | Path,
    model: ArtworkClassifier,
    batch_size: int = 64,
    num_workers: int | str = "auto",
    accelerator: str = "auto",
    cache_dir: str | Path | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and targets of the validation split that the run of `ckpt` recorded, on one device."""
    collection = CollectionSettings.from_config(model.hparams.get("data") or {})
    datamodule = ArtworkDataModule(
        model.task,
        model.preprocessing,
        recorded_split_file(ckpt, model),
        collection,
        loader=loader_settings(batch_size, num_workers, cache_dir),
    )
    outputs = single_device_trainer(accelerator).predict(model, datamodule=datamodule) or []
    if not outputs:
        return torch.zeros(0, len(model.task.classes)), torch.zeros(0, dtype=torch.long)
    logits, targets = zip(*outputs, strict=True)
    return torch.cat(logits), torch.cat(targets)


def split_other_collection(
    split_file: Path,
    collection: CollectionSettings,
    ckpt: str | Path,
    model: ArtworkClassifier,
    exclude_seen: bool,
) -> int:
    """Write every labelled image of `collection` as a test split, less those the model saw
    (`exclude_seen`); return how many were left out as seen."""
    seen = images_seen_by(ckpt, model) if exclude_seen else set()
    split = make_split(split_file, collection, model.task, seen=seen)
    if exclude_seen:
        log.info(
            "Left out %d of %d images of %s: the model trained or validated on them",
            split.excluded,
            split.excluded + len(split.samples),
            collection.root,
        )
    if not split.samples:
        raise CheckpointError(
            f"every labelled image of {collection.root} for {model.task.id} is one that {ckpt} "
            "trained or validated on: nothing is left to evaluate"
        )
    return split.excluded


def recorded_split_file(ckpt: str | Path, model: ArtworkClassifier) -> Path:
    """The run's `split.csv`: where the checkpoint says, or beside the run's checkpoints folder."""
    recorded = model.hparams.get("split_file")
    beside = Path(ckpt).resolve().parent.parent / SPLIT_FILE
    for candidate in (Path(recorded) if recorded else None, beside):
        if candidate is not None and candidate.is_file():
            return candidate
    raise CheckpointError(
        f"the split of the run that made {ckpt} is not at {recorded} nor at {beside}; "
        "pass split_file=... or data.root=... to evaluate on a collection"
    )


def images_seen_by(ckpt: str | Path, model: ArtworkClassifier) -> set[str]:
    """SHA-256 of the images the run that made `ckpt` trained or validated on."""
    try:
        split_file = recorded_split_file(ckpt, model)
    except CheckpointError as error:
        raise CheckpointError(
            f"{error}. Without it the images {model.task.id} trained on cannot be left out; "
            "pass exclude_seen=false to score every labelled image anyway"
        ) from None
    return seen_images(split_file, (model.hparams.get("data") or {}).get("root"))


def seen_images(split_file: str | Path, root: str | Path | None) -> set[str]:
    """SHA-256 of the train and val images of a recorded split.

    A split written before it recorded them (format 1) is hashed from the files under the
    training collection `root`; files gone from there are logged and cannot be matched.
    """
    split = read_split(split_file)
    seen, gone = set(), []
    for sample in (*split["train"], *split["val"]):
        if sample.sha256:
            seen.add(sample.sha256)
        elif root is not None and (Path(root) / table_path(sample.path)).is_file():
            seen.add(file_sha256(Path(root) / table_path(sample.path)))
        else:
            gone.append(sample.path)
    if gone:
        log.warning(
            "%d training images of %s have no recorded SHA-256 and are not under %s (e.g. %s): "
            "copies of them cannot be recognised",
            len(gone),
            split_file,
            root,
            gone[0],
        )
    return seen


def run_test(
    model: ArtworkClassifier, datamodule: ArtworkDataModule, accelerator: str = "auto"
) -> dict[str, Any]:
    """Test on exactly one device, so no sample is padded or counted twice."""
    single_device_trainer(accelerator).test(model, datamodule=datamodule, verbose=False)
    return dict(model.test_results)


def single_device_trainer(accelerator: str = "auto") -> L.Trainer:
    """A Trainer on one device that logs and saves nothing: for tests and predictions."""
    return L.Trainer(
        accelerator=accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
