"""The one function that turns an image file into RGB pixels, used everywhere."""

from __future__ import annotations

import hashlib
import math
import threading
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from significance.errors import UnreadableImageError

# File name endings read as images, in both collection layouts.
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".jp2"}
)

# Images above Pillow's decompression-bomb limit (`Image.MAX_IMAGE_PIXELS`) are decoded at
# reduced size; a format that cannot decode at reduced size (all but JPEG) is decoded in full
# first, which is allowed only up to this multiple of the limit (4 x 89 M pixels: ~1 GB RGB).
LARGE_IMAGE_FACTOR = 4

# The key of `load_image`'s result `info` that holds the upright full-size (width, height).
UPRIGHT_SIZE = "upright_size"
EXIF_ORIENTATION = 0x0112

# Pillow's default `Image.MAX_IMAGE_PIXELS`, used when a caller has set it to None.
PILLOW_DEFAULT_PIXEL_LIMIT = 1024 * 1024 * 1024 // 4 // 3

# Pillow's own guard is one global; it is lifted only while this module opens a header.
_guard_lock = threading.Lock()


def is_hidden(relative: str | Path) -> bool:
    """Whether a path inside a collection is hidden (`.ipynb_checkpoints/`, `.DS_Store`, ...)."""
    return any(part.startswith(".") for part in Path(relative).parts)


def pixel_limit() -> int:
    """Pillow's decompression-bomb limit in pixels as set now (tests may lower it)."""
    # Under the lock: another thread's `open_image` lifts the limit for a moment.
    with _guard_lock:
        return int(Image.MAX_IMAGE_PIXELS or PILLOW_DEFAULT_PIXEL_LIMIT)


def open_image(path: str | Path) -> Image.Image:
    """Open `path` lazily (header only), with Pillow's bomb guard lifted for this call alone.

    Callers decide themselves how large an image they decode (`load_image`).
    """
    with _guard_lock:
        limit = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            return Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = limit


def load_image(path: str | Path, size: int | None = None) -> Image.Image:
    """Decode `path` as an 8-bit RGB image, upright, alpha on white, resized to `size`x`size`.

    The resize stretches (aspect ratio not kept), as the original study's `Resize((224, 224))`.
    Large JPEGs are decoded at reduced scale straight away (`draft`), which is much faster.
    Images above Pillow's decompression-bomb limit are decoded at reduced size (JPEG draft,
    then `Image.reduce`) to at most the limit, never refused unless a full decode of them
    would pass `LARGE_IMAGE_FACTOR` times the limit. `image.info[UPRIGHT_SIZE]` keeps the
    upright photograph's full width and height: augmentation rotates in that frame.
    """
    try:
        with open_image(path) as image:
            upright = _upright_size(image)
            limit = pixel_limit()
            if image.format == "JPEG":
                # draft picks a DCT scale no smaller than the request: quality is kept, and
                # a request within the limit keeps the decode within 4 times the limit.
                request = _within(image.size, limit)
                if size is not None:
                    request = (min(size, request[0]), min(size, request[1]))
                if request != image.size:
                    image.draft("RGB", request)
            width, height = image.size
            if width * height > LARGE_IMAGE_FACTOR * limit:
                raise UnreadableImageError(
                    f"{path}: too large: {width}x{height} pixels, more than "
                    f"{LARGE_IMAGE_FACTOR} x Pillow's limit of {limit} to decode in full"
                )
            image.load()
            image = _reduce_to(image, limit)
            image = ImageOps.exif_transpose(image)
            image = _to_rgb(image)
    except UnreadableImageError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise UnreadableImageError(f"{path}: {error}") from error
    if size is not None and image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    image.info[UPRIGHT_SIZE] = upright
    return image


def _upright_size(image: Image.Image) -> tuple[int, int]:
    """Width and height of the full-size photograph once turned upright by its EXIF tag."""
    width, height = image.size
    # Orientations 5 to 8 turn the image by a quarter: width and height trade places.
    if image.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8):
        return height, width
    return width, height


def _within(size: tuple[int, int], limit: int) -> tuple[int, int]:
    """`size` scaled down, keeping its aspect, until it has at most `limit` pixels."""
    width, height = size
    factor = max(1.0, math.sqrt(width * height / limit))
    return max(1, int(width / factor)), max(1, int(height / factor))


def _reduce_to(image: Image.Image, limit: int) -> Image.Image:
    """Shrink a decoded image by an integer factor (box average) to at most `limit` pixels."""
    width, height = image.size
    if width * height <= limit:
        return image
    factor = math.ceil(math.sqrt(width * height / limit))
    try:
        return image.reduce(factor)
    except ValueError:  # modes reduce does not take (P, 1, I;16): convert first
        return _to_rgb(image).reduce(factor)


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB, compositing transparency on white."""
    if image.mode.startswith("I;16"):
        # 16-bit: the full 0..65535 range maps to 0..255, as an 8-bit export of it would.
        pixels = np.asarray(image).astype(np.float64)
        image = Image.fromarray(np.rint(pixels / 257.0).astype(np.uint8))
    elif image.mode in ("I", "F"):
        image = Image.fromarray(_scale_to_8bit(np.asarray(image, dtype=np.float64)))
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


def _scale_to_8bit(pixels: np.ndarray) -> np.ndarray:
    """32-bit integer or float greyscale as uint8: 16-bit and 0..1 ranges kept, else stretched."""
    low, high = float(pixels.min()), float(pixels.max())
    if low >= 0 and high <= 1.0:
        scaled = pixels * 255.0
    elif low >= 0 and high <= 65535:  # 16-bit data that Pillow widened to "I"
        scaled = pixels / 257.0
    else:
        scaled = (pixels - low) * (255.0 / (high - low))
    return np.rint(scaled).clip(0, 255).astype(np.uint8)


def image_pixels(image: Image.Image) -> np.ndarray:
    """3 x H x W uint8 pixels of an RGB image: channels first, as models and the cache take them."""
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1))


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's content, read in chunks: the key of caches and exact duplicates."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
