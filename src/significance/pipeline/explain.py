"""Grad-CAM heat maps (pytorch-grad-cam) of every decision the pipeline takes on an image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from significance.models.ensemble import FoldEnsemble
from significance.models.module import ArtworkClassifier
from significance.pipeline.inference import model_input, probabilities, resized
from significance.pipeline.loading import Pipeline
from significance.tasks import slugify


def last_conv_layer(net: nn.Module) -> nn.Module:
    """The last convolution of a model: where Grad-CAM reads activations and gradients."""
    convolutions = [module for module in net.modules() if isinstance(module, nn.Conv2d)]
    if not convolutions:
        raise ValueError(f"{type(net).__name__} has no Conv2d layer to explain")
    return convolutions[-1]


def model_heat_maps(model: ArtworkClassifier | FoldEnsemble, pixels: torch.Tensor) -> np.ndarray:
    """Grad-CAM of `model` for its top class; of an ensemble, its members' maps for the
    ensemble's top class, averaged."""
    if not isinstance(model, FoldEnsemble):
        return network_heat_maps(model, pixels, None)  # None: the predicted class
    top = probabilities(model, pixels).argmax(1).tolist()
    targets = [ClassifierOutputTarget(index) for index in top]
    return np.mean([network_heat_maps(member, pixels, targets) for member in model.members], 0)


def network_heat_maps(
    model: ArtworkClassifier, pixels: torch.Tensor, targets: list | None
) -> np.ndarray:
    """Grad-CAM heat maps of one classifier's last convolution for a uint8 batch."""
    for module in model.net.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False  # an in-place ReLU would overwrite the hooked activation
    device = next(model.parameters()).device
    inputs = model_input(pixels.to(device), model.preprocessing)
    with GradCAM(model=model.net, target_layers=[last_conv_layer(model.net)]) as cam:
        return cam(input_tensor=inputs, targets=targets)


def explain_batch(
    pipeline: Pipeline,
    pixels: torch.Tensor,
    rows: list[dict[str, Any]],
    names: list[str],
    output_dir: Path,
) -> None:
    """Save `<output_dir>/<name>/<task>.png`: each model's heat map for its top class.

    Stage 1 on every image; a stage-2 model only on the images it classified.
    """
    for task_id, model in pipeline.models().items():
        positions = [i for i, row in enumerate(rows) if row.get(task_id) is not None]
        if model is pipeline.stage1:
            positions = list(range(len(rows)))
        if not positions:
            continue
        heat_maps = model_heat_maps(model, pixels[positions])
        shown = resized(pixels[positions], model.preprocessing.image_size) / 255
        shown = shown.permute(0, 2, 3, 1).numpy().astype(np.float32)
        for position, image, heat_map in zip(positions, shown, heat_maps, strict=True):
            folder = output_dir / slugify(names[position])
            folder.mkdir(parents=True, exist_ok=True)
            overlay = show_cam_on_image(image, heat_map, use_rgb=True)
            Image.fromarray(overlay).save(folder / f"{slugify(task_id)}.png")
