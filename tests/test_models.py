from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from significance.errors import PretrainedWeightsMissing
from significance.models.build import build_classifier, preprocessing_for
from significance.models.module import ArtworkClassifier, read_checkpoint
from significance.run_files import LAST_CHECKPOINT
from significance.training.train import train


@pytest.mark.parametrize("name", ["tiny_vgg", "vgg16", "resnet18", "convnext_tiny"])
def test_any_torchvision_model_gets_a_head_for_the_task(name: str):
    model = build_classifier(name, num_classes=3)
    size = preprocessing_for(name, 32 if name != "convnext_tiny" else None).image_size
    with torch.no_grad():
        assert model.eval()(torch.rand(2, 3, size, size)).shape == (2, 3)


def test_vgg16_keeps_vgg_head_with_the_last_layer_replaced():
    model = build_classifier("vgg16", num_classes=5)
    assert [type(m) for m in model.classifier] == [
        nn.Linear,
        nn.ReLU,
        nn.Dropout,
        nn.Linear,
        nn.ReLU,
        nn.Dropout,
        nn.Linear,
    ]
    assert model.classifier[0].in_features == 25088
    assert model.classifier[-1].out_features == 5


@pytest.fixture
def imagenet_vgg16(monkeypatch) -> nn.Module:
    """A VGG16 standing in for ImageNet's, served by the weights loader (no 528 MB file)."""
    reference = torchvision.models.vgg16()
    monkeypatch.setattr(
        "significance.models.build.load_imagenet_state_dict",
        lambda name, weights="DEFAULT": reference.state_dict(),
    )
    return reference


def test_new_head_keeps_only_the_convolutions_of_the_weights(imagenet_vgg16: nn.Module):
    # The study's VGG: a classifier built afresh with PyTorch's default initialisation.
    model = build_classifier("vgg16", num_classes=3, pretrained=True, head="new")
    assert torch.equal(model.features[0].weight, imagenet_vgg16.features[0].weight)
    for index in (0, 3):
        weight = model.classifier[index].weight
        assert not torch.equal(weight, imagenet_vgg16.classifier[index].weight)
        bound = 1 / weight.shape[1] ** 0.5  # nn.Linear's default: uniform in +-1/sqrt(fan_in)
        assert weight.abs().max() <= bound and weight.abs().max() > 0.9 * bound
    assert model.classifier[-1].out_features == 3


def test_pretrained_head_keeps_the_first_two_linear_layers(imagenet_vgg16: nn.Module):
    model = build_classifier("vgg16", num_classes=3, pretrained=True, head="pretrained")
    for index in (0, 3):
        assert torch.equal(model.classifier[index].weight, imagenet_vgg16.classifier[index].weight)
    assert model.classifier[-1].out_features == 3


def test_an_unknown_head_is_refused():
    with pytest.raises(ValueError, match=r"model\.head"):
        build_classifier("vgg16", num_classes=3, head="frozen")


def test_preprocessing_follows_the_weights():
    vgg = preprocessing_for("vgg16", None)
    assert vgg.image_size == 224 and vgg.mean == (0.485, 0.456, 0.406)
    assert preprocessing_for("vgg16", 64).image_size == 64


def test_pretrained_weights_load_from_the_local_hub_cache(tmp_path: Path, monkeypatch):
    # shufflenet's ImageNet file is small (5 MB); the same code path loads VGG16's 528 MB file.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    reference = torchvision.models.shufflenet_v2_x0_5()
    url = torchvision.models.ShuffleNet_V2_X0_5_Weights.IMAGENET1K_V1.url
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(reference.state_dict(), tmp_path / "hub" / "checkpoints" / Path(url).name)
    model = build_classifier("shufflenet_v2_x0_5", num_classes=1000, pretrained=True)
    expected = reference.state_dict()["conv1.0.weight"]
    assert torch.equal(model.state_dict()["conv1.0.weight"], expected)


def test_missing_weights_offline_name_the_file_and_where_to_put_it(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    for variable in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(variable, "http://127.0.0.1:9")  # nothing listens: fails at once
    with pytest.raises(PretrainedWeightsMissing) as error:
        build_classifier("vgg16", num_classes=3, pretrained=True)
    message = str(error.value)
    assert "vgg16-397923af.pth" in message
    assert str(tmp_path / "hub" / "checkpoints") in message
    assert "model.pretrained=false" in message


def test_the_optimizer_and_its_schedule_are_config_groups(compose_train):
    cfg = compose_train(fast=False)
    assert cfg.optimizer._target_ == "torch.optim.Adam" and cfg.optimizer.lr == 1e-5
    assert cfg.optimizer.amsgrad and cfg.optimizer.fused and cfg.optimizer.weight_decay == 0
    assert cfg.scheduler is None  # the study's constant rate
    cfg = compose_train(
        "optimizer=sgd", "optimizer.lr=0.01", "scheduler=cosine", "trainer.max_epochs=7"
    )
    assert cfg.optimizer._target_ == "torch.optim.SGD" and cfg.optimizer.lr == 0.01
    assert cfg.optimizer.momentum == 0.9 and cfg.scheduler.T_max == 7


def test_configure_optimizers_instantiates_the_optimizer_and_schedule_configs():
    model = ArtworkClassifier(
        task={"id": "artefact", "stage": 1, "field": "artwork_type", "classes": ["a", "b"]},
        model={"name": "tiny_vgg"},
        optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1, "momentum": 0.9},
        preprocessing=preprocessing_for("tiny_vgg", 32).to_dict(),
        scheduler={
            "_target_": "torch.optim.lr_scheduler.CosineAnnealingLR",
            "_partial_": True,
            "T_max": 7,
        },
    )
    configured = model.configure_optimizers()
    optimizer, schedule = configured["optimizer"], configured["lr_scheduler"]
    assert type(optimizer) is torch.optim.SGD and optimizer.defaults["momentum"] == 0.9
    assert optimizer.param_groups[0]["params"] == list(model.parameters())
    assert type(schedule) is torch.optim.lr_scheduler.CosineAnnealingLR and schedule.T_max == 7
    assert schedule.optimizer is optimizer


def test_sgd_with_a_cosine_schedule_trains_into_a_plain_checkpoint(compose_train, tmp_path: Path):
    cfg = compose_train(
        "task=icons/location",
        "optimizer=sgd",
        "scheduler=cosine",  # over FAST's 2 epochs
        "callbacks.last_checkpoint.every_n_epochs=1",
        "callbacks.last_checkpoint.train_time_interval=null",
    )
    assert train(cfg)["status"] == "ok"  # its best.ckpt evaluated as evaluate.py does
    last = read_checkpoint(tmp_path / "run" / LAST_CHECKPOINT)  # weights_only: plain values
    assert last["hyper_parameters"]["optimizer"]["_target_"] == "torch.optim.SGD"
    assert last["hyper_parameters"]["scheduler"]["T_max"] == 2
    (schedule,) = last["lr_schedulers"]
    assert schedule["last_epoch"] == 2  # stepped once an epoch, down to 0 at the end
    assert last["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(0, abs=1e-12)
