"""The one function that turns an image file into RGB pixels, used everywhere."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# File name endings read as images, in both collection layouts.
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".jp2"}
)


class UnreadableImageError(Exception):
    """An image file that cannot be decoded; the message says why."""


def load_image(path: str | Path, size: int | None = None) -> Image.Image:
    """Decode `path` as an 8-bit RGB image, upright, alpha on white, resized to `size`x`size`.

    The resize stretches (aspect ratio not kept), as the original study's `Resize((224, 224))`.
    Large JPEGs are decoded at reduced scale straight away (`draft`), which is much faster.
    """
    try:
        with Image.open(path) as image:
            if size is not None and image.format == "JPEG":
                # draft picks a DCT scale no smaller than the request: quality is kept.
                image.draft("RGB", (size, size))
            image.load()
            image = ImageOps.exif_transpose(image)
            image = _to_rgb(image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise UnreadableImageError(f"{path}: {error}") from error
    if size is not None and image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB, compositing transparency on white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit and float greyscale: scale the real range to 0..255 rather than clip it.
        pixels = np.asarray(image, dtype=np.float64)
        low, high = float(pixels.min()), float(pixels.max())
        scale = 255.0 / (high - low) if high > low else 0.0
        image = Image.fromarray(((pixels - low) * scale).astype(np.uint8), mode="L")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode != "RGB":
        # CMYK, YCbCr, L, 1 and the rest: Pillow's own conversion handles each.
        return image.convert("RGB")
    return image


def image_to_array(image: Image.Image) -> np.ndarray:
    """HxWx3 uint8 pixels of an RGB image."""
    return np.asarray(image, dtype=np.uint8)
