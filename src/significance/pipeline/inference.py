"""Running the loaded models on decoded batches: each image decoded once, each model fed its input.

Images are decoded at the largest input size of the pipeline's models and kept as uint8; each
model then gets them resized (if its size is smaller) and normalised with its own statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from significance.data.images import image_pixels, load_image
from significance.data.transforms import Preprocessing, normalize
from significance.errors import UnreadableImageError
from significance.hardware import resolve_num_workers
from significance.models.ensemble import FoldEnsemble
from significance.models.module import ArtworkClassifier
from significance.pipeline.loading import Pipeline


@dataclass(frozen=True)
class Decoded:
    """One input file: its position in the input, its pixels (uint8 CHW) or why there are none."""

    index: int
    pixels: torch.Tensor | None
    error: str | None


class ImageFiles(Dataset):
    """Files decoded to uint8 CHW at one size; a file that cannot be read yields its reason."""

    def __init__(self, paths: Sequence[str | Path], image_size: int) -> None:
        self.paths = list(paths)
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Decoded:
        path = Path(self.paths[index])
        if path.is_file() and path.stat().st_size == 0:
            return Decoded(index, None, f"{path}: empty file (0 bytes)")
        try:
            image = load_image(path, self.image_size)
        except UnreadableImageError as error:
            return Decoded(index, None, str(error))
        pixels = torch.from_numpy(image_pixels(image))
        return Decoded(index, pixels, None)


def decoded_batches(
    paths: Sequence[str | Path], image_size: int, batch_size: int, num_workers: int | str
) -> DataLoader:
    """Batches of `Decoded` in input order, decoded in worker processes."""
    workers = resolve_num_workers(num_workers, 1)
    return DataLoader(
        ImageFiles(paths, image_size),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=list,
        pin_memory=False,
    )


def decode_size(pipeline: Pipeline) -> int:
    """The largest input size of the pipeline's models: every image is decoded once at it."""
    return max(model.preprocessing.image_size for model in pipeline.models().values())


def resized(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 NCHW -> float NCHW in 0..255 at `size` x `size` (antialiased bilinear)."""
    images = pixels.float()
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(
        images, size=(size, size), mode="bilinear", antialias=True, align_corners=False
    ).clamp(0, 255)


def model_input(pixels: torch.Tensor, preprocessing: Preprocessing) -> torch.Tensor:
    """uint8 NCHW at the decode size -> the float input `preprocessing` describes."""
    return normalize(resized(pixels, preprocessing.image_size), preprocessing)


@torch.inference_mode()
def logits(model: ArtworkClassifier, pixels: torch.Tensor) -> torch.Tensor:
    """Logits (N x classes, float32 on the CPU) of one classifier for a uint8 batch."""
    device = next(model.parameters()).device
    return model(model_input(pixels.to(device), model.preprocessing)).float().cpu()


def probability_pair(
    model: ArtworkClassifier | FoldEnsemble, pixels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Class probabilities (N x classes, on the CPU) of `model` for a uint8 batch: calibrated
    (its checkpoint's temperature; 1 with `calibration=none`), and at temperature 1. Of an
    ensemble, the means of its members' probabilities, each computed as a lone model's."""
    if isinstance(model, FoldEnsemble):
        pairs = [probability_pair(member, pixels) for member in model.members]
        calibrated, plain = zip(*pairs, strict=True)
        return torch.stack(calibrated).mean(0), torch.stack(plain).mean(0)
    model_logits = logits(model, pixels)
    return model.probabilities(model_logits), model_logits.softmax(dim=1)


def probabilities(model: ArtworkClassifier | FoldEnsemble, pixels: torch.Tensor) -> torch.Tensor:
    """Calibrated class probabilities of `model` for a uint8 batch (see `probability_pair`)."""
    return probability_pair(model, pixels)[0]


def stage2_probabilities(
    pipeline: Pipeline, pixels: torch.Tensor, routes: Sequence[str | None]
) -> dict[str, dict[int, torch.Tensor]]:
    """`{task id: {position: calibrated probabilities}}`: each image only through its route's
    models."""
    return {
        task_id: {position: pair[0] for position, pair in by_position.items()}
        for task_id, by_position in stage2_probability_pairs(pipeline, pixels, routes).items()
    }


def stage2_probability_pairs(
    pipeline: Pipeline, pixels: torch.Tensor, routes: Sequence[str | None]
) -> dict[str, dict[int, tuple[torch.Tensor, torch.Tensor]]]:
    """`{task id: {position: (calibrated probabilities, at T = 1)}}`: each image only through
    its route's models."""
    results: dict[str, dict[int, tuple[torch.Tensor, torch.Tensor]]] = {}
    for artwork_type, fields in pipeline.stage2.items():
        positions = [i for i, route in enumerate(routes) if route == artwork_type]
        if not positions:
            continue
        subset = pixels[positions]
        for model in fields.values():
            pairs = zip(*probability_pair(model, subset), strict=True)
            results[model.task.id] = dict(zip(positions, pairs, strict=True))
    return results
