"""Image files of every awkward kind a real collection holds, made on the spot for tests."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

# Pillow's decompression-bomb limit the tests set (monkeypatched), so a "huge" image is small.
TEST_PIXEL_LIMIT = 10_000

# name -> the problem the audit reports for it (None: decodes, nothing unusual but its size).
CRAFTED = {
    "truncated.jpg": "truncated",
    "zero.jpg": "empty file",
    "text.jpg": "not an image",
    "phone.jpg": "unsupported format",
    "cmyk.jpg": "cmyk",
    "deep.png": "16-bit",
    "palette.png": "palette with alpha",
    "grey_alpha.png": "greyscale with alpha",
    "rotated.jpg": "exif-rotated",
    "huge.png": "very large",
    "huge.jpg": "very large",
    "giant.png": "too large",
    "animated.gif": "multi-frame",
    "scan.tif": None,
    "photo.webp": None,
}


def noise(width: int, height: int, seed: int) -> Image.Image:
    """A photograph-like RGB image: smooth random blobs, distinct for every seed."""
    rng = np.random.default_rng(seed)
    coarse = (rng.random((6, 8, 3)) * 255).astype(np.uint8)
    return Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)


def make_crafted(folder: Path) -> dict[str, str | None]:
    """Write every file of `CRAFTED` into `folder`; returns `CRAFTED`."""
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    noise(300, 200, 1).save(buffer, "JPEG", quality=90)
    (folder / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("this is a text file renamed .jpg\n")
    (folder / "phone.jpg").write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00" + b"\x00" * 64)
    Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(folder / "cmyk.jpg", quality=95)
    deep = np.array([[0, 32896, 65535]] * 4, dtype=np.uint16)
    Image.fromarray(deep).save(folder / "deep.png")
    palette = Image.new("P", (4, 2), 0)
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette.putpixel((1, 0), 1)  # index 1 (blue) is the transparent one
    palette.save(folder / "palette.png", transparency=1)
    grey = Image.new("LA", (4, 2), (0, 255))
    grey.putpixel((1, 0), (0, 0))
    grey.save(folder / "grey_alpha.png")
    # Left half black, right half white; orientation 6: shown turned 90 degrees clockwise.
    rotated = Image.new("RGB", (40, 20), (255, 255, 255))
    rotated.paste((0, 0, 0), (0, 0, 20, 20))
    exif = rotated.getexif()
    exif[0x0112] = 6
    rotated.save(folder / "rotated.jpg", exif=exif, quality=95)
    Image.new("RGB", (200, 100), (10, 200, 30)).save(folder / "huge.png")  # 2 x the limit
    Image.new("RGB", (200, 100), (10, 200, 30)).save(folder / "huge.jpg", quality=95)
    Image.new("RGB", (300, 200), (10, 200, 30)).save(folder / "giant.png")  # 6 x the limit
    frames = [Image.new("RGB", (20, 20), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:])
    Image.new("RGB", (20, 20), (200, 40, 120)).save(folder / "scan.tif")
    Image.new("RGB", (20, 20), (0, 128, 255)).save(folder / "photo.webp", lossless=True)
    return CRAFTED
