from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from significance.data.images import UnreadableImageError, load_image


def test_alpha_is_composited_on_white(tmp_path: Path):
    Image.new("RGBA", (8, 8), (255, 0, 0, 0)).save(tmp_path / "clear.png")
    pixels = np.asarray(load_image(tmp_path / "clear.png"))
    assert pixels.shape == (8, 8, 3)
    assert (pixels == 255).all()


def test_exif_orientation_is_applied(tmp_path: Path):
    image = Image.new("RGB", (40, 20), (0, 0, 0))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    image.save(tmp_path / "rotated.jpg", exif=exif)
    assert load_image(tmp_path / "rotated.jpg").size == (20, 40)


@pytest.mark.parametrize("mode", ["CMYK", "L", "P", "LA", "I;16"])
def test_every_mode_becomes_8bit_rgb(tmp_path: Path, mode: str):
    suffix = ".jpg" if mode == "CMYK" else ".png"
    Image.new(mode, (16, 12)).save(tmp_path / f"x{suffix}")
    image = load_image(tmp_path / f"x{suffix}", size=32)
    assert image.mode == "RGB" and image.size == (32, 32)


def test_large_jpeg_is_drafted_and_resized(tmp_path: Path):
    Image.new("RGB", (1600, 1200), (10, 200, 30)).save(tmp_path / "big.jpg")
    pixels = np.asarray(load_image(tmp_path / "big.jpg", size=224))
    assert pixels.shape == (224, 224, 3)
    assert abs(int(pixels[..., 1].mean()) - 200) < 3


def test_a_truncated_file_raises_a_clear_error(tmp_path: Path):
    Image.new("RGB", (200, 200), (1, 2, 3)).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(UnreadableImageError, match=r"cut\.jpg"):
        load_image(tmp_path / "cut.jpg")
