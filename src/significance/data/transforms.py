"""Preprocessing and the study's augmentation, applied to whole uint8 batches on the device.

Images are decoded and resized once per sample on the CPU (`load_image`); rotation, flips and
normalisation then run on the batch where the model runs, each image with its own random draw
as torchvision's per-image transforms would give it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Preprocessing:
    """What a model expects of its input; stored in every checkpoint."""

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def to_dict(self) -> dict:
        """Plain values, as stored in checkpoints."""
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in asdict(self).items()
        }

    @classmethod
    def from_dict(cls, values: dict) -> Preprocessing:
        """Inverse of `to_dict`."""
        return cls(int(values["image_size"]), tuple(values["mean"]), tuple(values["std"]))


@dataclass(frozen=True)
class Augmentation:
    """The study's training augmentation: RandomRotation(30) and random flips both ways."""

    rotation_degrees: float = 30.0
    horizontal_flip: float = 0.5
    vertical_flip: float = 0.5


def normalize(images: torch.Tensor, preprocessing: Preprocessing) -> torch.Tensor:
    """uint8 NCHW in 0..255 -> float NCHW normalised with the model's mean and std."""
    mean = torch.tensor(preprocessing.mean, device=images.device).view(1, -1, 1, 1)
    std = torch.tensor(preprocessing.std, device=images.device).view(1, -1, 1, 1)
    return (images.float() / 255.0 - mean) / std


def augment(
    images: torch.Tensor, augmentation: Augmentation, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Rotate and flip every image of a float NCHW batch with its own random draw.

    Rotation matches `transforms.RandomRotation(degrees)`: an angle uniform in
    [-degrees, degrees] about the centre, nearest-neighbour sampling, corners filled with 0.
    Call it before normalisation so that the fill is black, as in the study.
    """
    batch, device = images.shape[0], images.device
    # Draws come from a CPU generator, so a seed gives the same augmentation on any device.
    draws = torch.rand(3, batch, generator=generator).to(device)
    if augmentation.rotation_degrees > 0:
        angles = (draws[0] * 2 - 1) * math.radians(augmentation.rotation_degrees)
        cos, sin = torch.cos(angles), torch.sin(angles)
        zeros = torch.zeros_like(cos)
        # The angle's distribution is symmetric, so the direction convention does not matter.
        theta = torch.stack(
            [torch.stack([cos, -sin, zeros], 1), torch.stack([sin, cos, zeros], 1)], 1
        ).to(images.dtype)
        height, width = images.shape[-2:]
        # Non-square images: rotate in pixel units, not in the [-1, 1] box.
        theta[:, 0, 1] *= height / width
        theta[:, 1, 0] *= width / height
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        images = F.grid_sample(
            images, grid, mode="nearest", padding_mode="zeros", align_corners=False
        )
    flip_h = draws[1] < augmentation.horizontal_flip
    flip_v = draws[2] < augmentation.vertical_flip
    images = torch.where(flip_h.view(-1, 1, 1, 1), images.flip(-1), images)
    images = torch.where(flip_v.view(-1, 1, 1, 1), images.flip(-2), images)
    return images
