"""Imbalanced classes: class weights, the balanced sampler, balanced accuracy in the results."""

import csv
import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from PIL import Image
from sklearn.metrics import balanced_accuracy_score

from hydra_plugins.significance_launcher.sweep_record import SweepJob, summary_row
from significance.data.balance import class_weights
from significance.data.samplers import BalancedSampler
from significance.data.split import read_split
from significance.entry import one_line
from significance.errors import ConfigurationError
from significance.models.module import load_classifier
from significance.training.preflight import check_values, warn_about_settings
from significance.training.train import train

# icons/location with 20 times more `other` icons than `cyprus` ones; a test split of 30% keeps
# 12 cyprus icons to score.
COUNTS = {"cyprus": 40, "other": 800}
# The cue (a tint from blue to red) of a cyprus icon is 2 standard deviations from an other
# icon's: learnable, but where the classes overlap 20 to 1 the prior wins. Even the best
# unweighted classifier recalls about a third of the cyprus icons, a balanced one about 85%.
TINT_SHIFT = 2.0
# A few seconds a run (seeds 0 to 4 all showed the effect). Checkpoints are chosen on macro
# accuracy, as docs/training.md advises for an imbalanced task: plain val/acc prefers the
# epoch that calls every icon `other`.
RECIPE = (
    "task=icons/location",
    "data.test_fraction=0.3",
    "data.group_duplicates=false",  # plain tinted squares: the perceptual hash groups them
    "model.image_size=16",
    "data.batch_size=64",
    "optimizer.lr=3e-3",
    "trainer.max_epochs=4",
    "callbacks.best_checkpoint.monitor=val/acc_macro",
    "callbacks.progress_bar=null",
)


def make_imbalanced_collection(root: Path, seed: int = 0) -> Path:
    """Noisy 24 px icons, each a square tinted by its class's cue, in the annotations layout."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    rows = []
    for index, label in enumerate(label for label, n in COUNTS.items() for _ in range(n)):
        tint = rng.normal(TINT_SHIFT if label == "cyprus" else 0.0, 1.0)
        pixels = rng.normal(110, 25, size=(24, 24, 3))
        square = (128 + 40 * tint, 100, 128 - 40 * tint)
        pixels[2:22, 2:22] = square + rng.normal(0, 20, size=(20, 20, 3))
        path = f"images/{index:04d}.png"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(root / path)
        rows.append([path, "icons", label])
    with (root / "annotations.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "artwork_type", "location"])
        writer.writerows(rows)
    return root


def test_class_weights_and_balanced_sampling_each_raise_the_minority_recall(
    compose_train, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    root = make_imbalanced_collection(tmp_path / "collection")
    runs = {}
    for name, override in (
        ("unweighted", "loss.class_weights=none"),
        ("class weights", "loss.class_weights=balanced"),
        ("balanced sampler", "data.sampler=balanced"),
    ):
        cfg = compose_train(*RECIPE, f"data.root={root}", override)
        result = train(cfg)
        GlobalHydra.instance().clear()
        run_dir = tmp_path / name.replace(" ", "_")
        (tmp_path / "run").rename(run_dir)
        runs[name] = (result, run_dir)
    recall = {name: recall_of(run_dir, "cyprus") for name, (_, run_dir) in runs.items()}
    balanced = {name: result["test_balanced_acc"] for name, (result, _) in runs.items()}
    seen = f"cyprus recall on 12 test icons {recall}, balanced accuracy {balanced}"
    for helped in ("class weights", "balanced sampler"):
        assert recall[helped] > recall["unweighted"], seen
        # Not bought by calling every icon cyprus: the mean of both recalls rises too.
        assert balanced[helped] > balanced["unweighted"], seen
    for result, run_dir in runs.values():
        check_balanced_accuracy_is_sklearns(result, run_dir)
    check_weights_are_the_training_splits(runs["class weights"][1], runs["unweighted"][1], caplog)


def recall_of(run_dir: Path, name: str) -> float:
    """A class's recall on the run's test split (its metrics.json)."""
    metrics = json.loads((run_dir / "test" / "metrics.json").read_text())
    assert metrics[f"test/support/{name}"] >= 10
    return metrics[f"test/recall/{name}"]


def check_balanced_accuracy_is_sklearns(result: dict, run_dir: Path) -> None:
    """result.json's test_balanced_acc is scikit-learn's balanced accuracy of its predictions."""
    with (run_dir / "test" / "predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    truth = [row["true_class"] for row in rows]
    predicted = [row["predicted_class"] for row in rows]
    expected = balanced_accuracy_score(truth, predicted)
    assert result["test_balanced_acc"] == pytest.approx(expected, abs=1e-6)


def check_weights_are_the_training_splits(
    weighted_dir: Path, unweighted_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """n / (k * n_c) of the training split, saved as plain floats; a resume restores them."""
    counts = Counter(sample.label for sample in read_split(weighted_dir / "split.csv")["train"])
    total = sum(counts.values())
    expected = [total / (2 * counts[name]) for name in ("cyprus", "other")]
    checkpoint = weighted_dir / "checkpoints" / "best.ckpt"
    saved = torch.load(checkpoint, weights_only=True)["hyper_parameters"]["class_weights"]
    assert saved == pytest.approx(expected) and all(type(w) is float for w in saved)
    assert saved[0] > 10 * saved[1]  # the 20:1 ratio, give or take the split's rounding
    unweighted = unweighted_dir / "checkpoints" / "best.ckpt"
    assert torch.load(unweighted, weights_only=True)["hyper_parameters"]["class_weights"] is None
    model = load_classifier(checkpoint)
    assert model.loss_weights.tolist() == pytest.approx(expected)
    # Resuming takes the checkpoint's weights, whatever the run computed at its setup, and
    # says so when they differ.
    model.use_class_weights(None)
    model.on_load_checkpoint({"hyper_parameters": {"class_weights": saved}})
    assert model.loss_weights.tolist() == pytest.approx(expected)
    assert model.hparams.class_weights == saved
    assert "Resuming with the run's class weights" in caplog.text


def test_class_weights_balanced_given_or_none():
    labels = ["gold"] * 2 + ["silver"] * 6 + ["other"] * 4
    classes = ("gold", "silver", "other")
    assert class_weights("balanced", classes, labels) == pytest.approx([2.0, 2 / 3, 1.0])
    assert class_weights({"gold": 5}, classes, labels) == [5.0, 1.0, 1.0]
    assert class_weights("none", classes, labels) is None
    assert class_weights(None, classes, labels) is None


@pytest.mark.parametrize(
    "override, message",
    [
        ("loss.class_weights={gold:2,platinum:3}", r"names \['platinum'\], which are not classes"),
        ("loss.class_weights={gold:0}", "must be numbers > 0"),
        ("loss.class_weights=inverse", "must be none, balanced or"),
        ("data.sampler=weighted", r"data.sampler must be one of \['shuffle', 'balanced'\]"),
    ],
)
def test_bad_imbalance_settings_are_refused_in_one_line(compose_train, override, message):
    cfg = compose_train("task=coins/material", override)
    with pytest.raises(ConfigurationError, match=message) as caught:
        check_values(cfg)  # what train.py runs before torch loads
    assert one_line(caught.value) == str(caught.value)


def test_imbalance_settings_that_defeat_their_purpose_are_warned_about(compose_train, caplog):
    def advice(*overrides: str) -> list[str]:
        return warn_about_settings(compose_train("task=coins/material", *overrides))

    assert advice() == []  # the study's training: nothing to say
    macro = "callbacks.best_checkpoint.monitor=val/acc_macro"
    assert advice("loss.class_weights=balanced", macro) == []
    assert advice("data.sampler=balanced", macro) == []
    (line,) = advice("loss.class_weights=balanced")
    assert "monitor=val/acc_macro" in line and line in caplog.text
    (line,) = advice("data.sampler=balanced", "loss.class_weights={gold:5}", macro)
    assert "counts the rare classes up twice" in line


def draws(labels: list[int], world_size: int, rank: int, epoch: int, seed: int = 0) -> list:
    """One rank's indices in one epoch of the balanced sampler."""
    sampler = BalancedSampler(labels, world_size, rank, seed=seed)
    sampler.set_epoch(epoch)
    return list(sampler)


def test_balanced_sampler_deals_one_seeded_list_per_epoch_to_the_ranks():
    labels = [0] * 90 + [1] * 6 + [2] * 4
    whole = draws(labels, 1, 0, epoch=3)
    assert len(whole) == len(labels)  # an epoch as long as the shuffled sampler's
    for world_size in (2, 4):
        parts = [draws(labels, world_size, rank, epoch=3) for rank in range(world_size)]
        assert [len(part) for part in parts] == [len(labels) // world_size] * world_size
        # Every rank takes its own places of the same list: together they are that list.
        assert [index for places in zip(*parts, strict=True) for index in places] == whole
    assert draws(labels, 2, 1, epoch=3) == draws(labels, 2, 1, epoch=3)
    assert draws(labels, 1, 0, epoch=4) != whole
    assert draws(labels, 1, 0, epoch=3, seed=1) != whole
    # The trainer's epoch, when there is one (what a resumed run counts from).
    sampler = BalancedSampler(labels, 1, 0, seed=0, trainer=SimpleNamespace(current_epoch=3))
    assert list(sampler) == whole
    # Each class equally likely per draw, drawn with replacement: 2000 draws, a third each.
    drawn = Counter(labels[index] for epoch in range(20) for index in draws(labels, 1, 0, epoch))
    assert all(600 <= drawn[label] <= 730 for label in (0, 1, 2)), drawn


def test_summary_rows_carry_the_balanced_accuracy(tmp_path: Path):
    (tmp_path / "result.json").write_text(json.dumps({"status": "ok", "test_balanced_acc": 0.5}))
    row = summary_row(SweepJob(0, [], tmp_path, None), "ok")
    assert row["test_balanced_acc"] == 0.5
