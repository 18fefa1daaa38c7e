from pathlib import Path

import numpy as np
import pytest
from crafted_images import TEST_PIXEL_LIMIT, make_crafted
from PIL import Image

from significance.data.images import image_pixels, load_image
from significance.errors import UnreadableImageError


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


@pytest.fixture
def crafted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The crafted files, with Pillow's bomb limit lowered so that huge.* are above it."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", TEST_PIXEL_LIMIT)
    make_crafted(tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("cmyk.jpg", [[255, 0, 0]]),  # CMYK (0, 255, 255, 0) is red
        ("deep.png", [[0, 0, 0], [128, 128, 128], [255, 255, 255]]),  # 16-bit range -> 8-bit
        ("palette.png", [[255, 0, 0], [255, 255, 255]]),  # transparent index on white
        ("grey_alpha.png", [[0, 0, 0], [255, 255, 255]]),
        ("animated.gif", [[255, 0, 0]]),  # the first frame
        ("scan.tif", [[200, 40, 120]]),
        ("photo.webp", [[0, 128, 255]]),
    ],
)
def test_crafted_files_load_as_8bit_rgb(crafted: Path, name: str, expected: list):
    pixels = np.asarray(load_image(crafted / name)).astype(int)
    assert pixels.dtype == int and pixels.shape[2] == 3
    for index, colour in enumerate(expected):
        assert np.abs(pixels[0, index] - colour).max() <= 6, (name, index, pixels[0, index])


def test_exif_rotation_turns_the_content_upright(crafted: Path):
    pixels = np.asarray(load_image(crafted / "rotated.jpg")).astype(int)
    assert pixels.shape == (40, 20, 3)
    # The black left half of the stored image is on top once turned clockwise.
    assert pixels[5, 10].max() < 40 and pixels[35, 10].min() > 215


@pytest.mark.parametrize("name", ["huge.png", "huge.jpg"])
def test_images_above_the_bomb_limit_are_decoded_reduced(crafted: Path, name: str):
    image = load_image(crafted / name)
    assert image.width * image.height <= TEST_PIXEL_LIMIT
    assert image.width > image.height  # aspect kept by the reduction
    assert np.abs(np.asarray(image).astype(int)[0, 0] - [10, 200, 30]).max() <= 6
    assert load_image(crafted / name, size=32).size == (32, 32)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("giant.png", "too large"),
        ("truncated.jpg", "truncated"),
        ("zero.jpg", "cannot identify"),
        ("text.jpg", "cannot identify"),
    ],
)
def test_files_that_cannot_be_decoded_raise_with_the_reason(crafted: Path, name, message):
    with pytest.raises(UnreadableImageError, match=message):
        load_image(crafted / name, size=32)


def test_image_pixels_are_channels_first_and_writable():
    image = Image.new("RGB", (5, 3), (10, 20, 30))
    pixels = image_pixels(image)
    assert pixels.shape == (3, 3, 5) and pixels.dtype == np.uint8
    assert pixels.flags.writeable and pixels.flags.c_contiguous
    assert [int(pixels[channel].max()) for channel in range(3)] == [10, 20, 30]
