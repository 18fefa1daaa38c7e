"""A faithful re-implementation of the original study's training loop, for comparison only.

As the original code did: `ImageFolder` on class folders, a `DataLoader` with the
default `num_workers=0` (every image decoded in the main process), each image decoded at full
size with PIL and rotated by RandomRotation(30) *before* `Resize((224, 224))`, random flips
both ways and ImageNet normalisation on every epoch, fp32, the model wrapped in
`nn.DataParallel`, Adam (amsgrad) at lr 1e-5, batch 32. Nothing here is used by the project.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def original_transforms(train: bool, size: int = 224) -> transforms.Compose:
    """The original's per-image transforms: rotation at full size, then resize, flips, normalise."""
    resize_and_normalize = [
        transforms.Resize((size, size)),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ]
    if not train:
        return transforms.Compose(resize_and_normalize)
    return transforms.Compose(
        [
            transforms.RandomRotation(30),
            resize_and_normalize[0],
            transforms.RandomHorizontalFlip(),
            transforms.RandomVerticalFlip(),
            *resize_and_normalize[1:],
        ]
    )


def original_loader(
    root: str | Path, train: bool, batch_size: int = 32, size: int = 224
) -> DataLoader:
    """ImageFolder on `root`'s class folders, in the main process (num_workers=0)."""
    dataset = datasets.ImageFolder(str(root), transform=original_transforms(train, size))
    return DataLoader(dataset, batch_size=batch_size, shuffle=train, num_workers=0)


def original_model(model: nn.Module, device: torch.device) -> nn.Module:
    """The model as the original ran it: wrapped in nn.DataParallel, fp32."""
    return nn.DataParallel(model).to(device)


def original_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    """Adam at lr 1e-5 with amsgrad, as in the original configuration."""
    return torch.optim.Adam(model.parameters(), lr=1e-5, amsgrad=True)


def batches(loader: DataLoader, device: torch.device) -> Iterator[tuple[torch.Tensor, ...]]:
    """The loader's batches moved to `device`, as the original loop did."""
    for images, targets in loader:
        yield images.to(device), targets.to(device)


def train_epoch(
    model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, device: torch.device
) -> int:
    """One epoch of the original training loop; returns the number of images seen."""
    model.train()
    criterion = nn.CrossEntropyLoss()
    seen = 0
    for images, targets in batches(loader, device):
        optimizer.zero_grad()
        loss = criterion(model(images), targets)
        loss.backward()
        optimizer.step()
        seen += len(targets)
    return seen


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device) -> int:
    """One pass of the original evaluation loop; returns the number of images seen."""
    model.eval()
    seen = 0
    for images, targets in batches(loader, device):
        model(images).argmax(1)
        seen += len(targets)
    return seen


def pipeline_epoch(loader: DataLoader, device: torch.device) -> int:
    """The data pipeline alone (decode, augment, batch, transfer); returns images seen."""
    return sum(len(targets) for _, targets in batches(loader, device))
