"""Grad-CAM heat maps (pytorch-grad-cam) of every decision the pipeline takes on an image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from torch import nn

from significance.pipeline.inference import model_input, resized
from significance.pipeline.loading import Pipeline
from significance.tasks import slugify


def last_conv_layer(net: nn.Module) -> nn.Module:
    """The last convolution of a model: where Grad-CAM reads activations and gradients."""
    convolutions = [module for module in net.modules() if isinstance(module, nn.Conv2d)]
    if not convolutions:
        raise ValueError(f"{type(net).__name__} has no Conv2d layer to explain")
    return convolutions[-1]


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
        for module in model.net.modules():
            if isinstance(module, nn.ReLU):
                module.inplace = False  # an in-place ReLU would overwrite the hooked activation
        device = next(model.parameters()).device
        inputs = model_input(pixels[positions].to(device), model.preprocessing)
        with GradCAM(model=model.net, target_layers=[last_conv_layer(model.net)]) as cam:
            heat_maps = cam(input_tensor=inputs, targets=None)  # None: the predicted class
        shown = resized(pixels[positions], model.preprocessing.image_size) / 255
        shown = shown.permute(0, 2, 3, 1).numpy().astype(np.float32)
        for position, image, heat_map in zip(positions, shown, heat_maps, strict=True):
            folder = output_dir / slugify(names[position])
            folder.mkdir(parents=True, exist_ok=True)
            overlay = show_cam_on_image(image, heat_map, use_rgb=True)
            Image.fromarray(overlay).save(folder / f"{slugify(task_id)}.png")
