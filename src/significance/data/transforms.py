"""Preprocessing and the study's augmentation, applied to whole uint8 batches on the device.

Images are decoded and resized once per sample on the CPU (`load_image`); rotation, flips and
normalisation then run on the batch where the model runs, each image with its own random draw
as torchvision's per-image transforms would give it.
"""

from __future__ import annotations

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
    images: torch.Tensor,
    augmentation: Augmentation,
    generator: torch.Generator | None = None,
    aspects: torch.Tensor | None = None,
) -> torch.Tensor:
    """Rotate and flip every image of a float NCHW batch with its own random draw.

    Rotation is `transforms.RandomRotation(degrees)` on the full-size photograph followed by
    the resize to the batch's size, as in the study: an angle uniform in [-degrees, degrees],
    corners filled with 0 (call it before normalisation, so that they are black). `aspects`
    gives each source photograph's height / width (default: the batch's own).
    """
    batch, device = images.shape[0], images.device
    # Draws come from a CPU generator, so a seed gives the same augmentation on any device.
    draws = torch.rand(3, batch, generator=generator).to(device)
    if augmentation.rotation_degrees > 0:
        angles = (draws[0] * 2 - 1) * augmentation.rotation_degrees
        images = rotate_resized(images, angles, aspects)
    flip_h = draws[1] < augmentation.horizontal_flip
    flip_v = draws[2] < augmentation.vertical_flip
    images = torch.where(flip_h.view(-1, 1, 1, 1), images.flip(-1), images)
    images = torch.where(flip_v.view(-1, 1, 1, 1), images.flip(-2), images)
    return images


def rotate_resized(
    images: torch.Tensor, degrees: torch.Tensor, aspects: torch.Tensor | None = None
) -> torch.Tensor:
    """What rotating each full-size photograph by `degrees` (counter-clockwise, about its
    centre, as `torchvision.transforms.functional.rotate`) and then resizing it to the batch's
    size gives, computed from the resized images alone.

    In the photograph's frame the rotation is R; the resize scales each axis by its own factor
    S, so the batch sees S·R·S⁻¹ (a rotation of a 4:3 photograph is rotation plus shear once
    squashed square). Sampled bilinearly, as the study's antialiased resize smooths.
    """
    height, width = images.shape[-2:]
    if aspects is None:
        aspects = torch.full((images.shape[0],), height / width)
    aspects = aspects.to(device=images.device, dtype=images.dtype)
    radians = torch.deg2rad(degrees.to(device=images.device, dtype=images.dtype))
    cos, sin = torch.cos(radians), torch.sin(radians)
    zeros = torch.zeros_like(cos)
    # affine_grid maps each output point to where it samples from, in [-1, 1] coordinates,
    # which are the photograph's own scaled by its width and height (y points down).
    theta = torch.stack(
        [
            torch.stack([cos, -sin * aspects, zeros], 1),
            torch.stack([sin / aspects, cos, zeros], 1),
        ],
        1,
    )
    grid = affine_grid(theta, height, width)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def affine_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """`F.affine_grid(theta, ..., align_corners=False)` by broadcasting: faster on a CPU."""
    dtype, device = theta.dtype, theta.device
    xs = ((torch.arange(width, dtype=dtype, device=device) * 2 + 1) / width - 1).view(1, 1, -1)
    ys = ((torch.arange(height, dtype=dtype, device=device) * 2 + 1) / height - 1).view(1, -1, 1)
    t = theta.view(-1, 2, 3, 1, 1)
    across = t[:, 0, 0] * xs + t[:, 0, 1] * ys + t[:, 0, 2]
    down = t[:, 1, 0] * xs + t[:, 1, 1] * ys + t[:, 1, 2]
    return torch.stack([across, down], -1)
