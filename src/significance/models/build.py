"""Building classifiers: any torchvision classification model by name, or a tiny test model."""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

from significance.data.transforms import Preprocessing
from significance.errors import ConfigurationError, PretrainedWeightsMissing

# ImageNet statistics, used by every torchvision classification weight and by the tiny model.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TINY_MODEL = "tiny_vgg"
# model.head: `new`, every linear layer of the classifier with PyTorch's default initialisation
# (the study's VGG16: only the convolutions come from ImageNet); `pretrained`, the weights'
# own linear layers kept and only the last one replaced.
HEADS = ("new", "pretrained")


class TinyVGG(nn.Module):
    """A VGG-shaped model (conv blocks, adaptive pooling, 3-layer head) small enough for tests.

    torchvision's `VGG` has the same parts under the same names (so the same state-dict keys),
    but builds and initialises ImageNet's 25088x4096 head before it could be swapped: 2.3 s a
    model on a CPU, for a model that trains a step in milliseconds.
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((2, 2))
        self.classifier = nn.Sequential(
            nn.Linear(16 * 2 * 2, 32),
            nn.ReLU(True),
            nn.Dropout(dropout),
            nn.Linear(32, 32),
            nn.ReLU(True),
            nn.Dropout(dropout),
            nn.Linear(32, num_classes),
        )
        for module in self.features.modules():  # VGG's initialisation of its convolutions
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.constant_(module.bias, 0)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(images)), 1))


def build_classifier(
    name: str,
    num_classes: int,
    pretrained: bool = False,
    weights: str = "DEFAULT",
    head: str = "pretrained",
) -> nn.Module:
    """A classification model `name` with its last layer sized for `num_classes`.

    `pretrained` loads torchvision's `weights` (ImageNet) from the torch hub cache, downloading
    them once if there is a network; the new last layer always starts from random weights.
    `head="new"` also starts every other linear layer afresh (see `HEADS`).
    """
    if head not in HEADS:
        raise ConfigurationError(f"model.head must be one of {HEADS}, got {head!r}")
    if name == TINY_MODEL:
        return TinyVGG(num_classes=num_classes)
    model = torchvision.models.get_model(name, weights=None)
    if pretrained:
        model.load_state_dict(load_imagenet_state_dict(name, weights))
    if head == "new":
        _reset_linear_layers(model)
    _replace_last_linear(model, num_classes)
    return model


def _reset_linear_layers(model: nn.Module) -> None:
    """PyTorch's default initialisation for every `nn.Linear`, as a freshly built layer has."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            module.reset_parameters()


def _replace_last_linear(model: nn.Module, num_classes: int) -> None:
    """Swap the model's final `nn.Linear` (VGG's classifier[-1], ResNet's fc, ...) for a new one."""
    last_name, last = None, None
    for module_name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last_name, last = module_name, module
    if last is None:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer to replace")
    parent = model.get_submodule(last_name.rpartition(".")[0]) if "." in last_name else model
    replacement = nn.Linear(last.in_features, num_classes, bias=last.bias is not None)
    setattr(parent, last_name.rpartition(".")[2], replacement)


def imagenet_weights(name: str, weights: str = "DEFAULT") -> torchvision.models.WeightsEnum:
    """torchvision's weights entry `weights` (e.g. IMAGENET1K_V1) of model `name`."""
    return torchvision.models.get_model_weights(name)[weights]


def load_imagenet_state_dict(name: str, weights: str = "DEFAULT") -> dict[str, torch.Tensor]:
    """The ImageNet state dict of `name`, from the hub cache; a clear error when unavailable."""
    entry = imagenet_weights(name, weights)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(entry.url).name
    try:
        return entry.get_state_dict(progress=True, weights_only=True)
    except Exception as error:  # no network, a proxy, a refused download, a broken file
        raise PretrainedWeightsMissing(
            f"cannot load the ImageNet weights of {name} ({error.__class__.__name__}: {error}). "
            f"Put the file {cached.name} at {cached} (download it from {entry.url}; "
            "TORCH_HOME moves that folder), or train from random weights with "
            "model.pretrained=false."
        ) from error


def preprocessing_for(name: str, image_size: int | None, weights: str = "DEFAULT") -> Preprocessing:
    """The input a model expects: the weights' own size and statistics, `image_size` if given."""
    if name == TINY_MODEL:
        return Preprocessing(image_size or 32, IMAGENET_MEAN, IMAGENET_STD)
    transforms = imagenet_weights(name, weights).transforms()
    size = image_size or int(transforms.crop_size[0])
    return Preprocessing(size, tuple(transforms.mean), tuple(transforms.std))
