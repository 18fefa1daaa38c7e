import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from torchvision import transforms
from torchvision.transforms import functional

from significance.data.images import image_pixels
from significance.data.transforms import (
    Augmentation,
    Preprocessing,
    affine_grid,
    augment,
    normalize,
    rotate_resized,
)


def test_no_augmentation_is_identity():
    images = torch.rand(4, 3, 16, 16)
    none = Augmentation(rotation_degrees=0, horizontal_flip=0, vertical_flip=0)
    assert torch.equal(augment(images, none), images)


def test_each_image_gets_its_own_flip():
    images = torch.arange(16.0).view(1, 1, 4, 4).repeat(64, 3, 1, 1)
    flips = Augmentation(rotation_degrees=0, horizontal_flip=0.5, vertical_flip=0)
    out = augment(images, flips, torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(out, images, strict=True)])
    assert 10 < int(flipped.sum()) < 54  # some flipped, some not: one draw per image


def test_rotation_keeps_the_centre_and_blackens_corners():
    images = torch.full((32, 3, 33, 33), 200.0)
    rotate = Augmentation(rotation_degrees=30, horizontal_flip=0, vertical_flip=0)
    out = augment(images, rotate, torch.Generator().manual_seed(1))
    assert (out[:, :, 16, 16] == 200).all()
    assert (out[:, :, 0, 0] == 0).float().mean() > 0.5  # most images turned by a visible angle


def test_same_seed_same_augmentation():
    images = torch.rand(8, 3, 16, 16)
    first = augment(images, Augmentation(), torch.Generator().manual_seed(3))
    second = augment(images, Augmentation(), torch.Generator().manual_seed(3))
    assert torch.equal(first, second)


def test_normalize_uses_the_model_statistics():
    preprocessing = Preprocessing(4, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    images = torch.full((1, 3, 4, 4), 255, dtype=torch.uint8)
    assert torch.allclose(normalize(images, preprocessing), torch.full((1, 3, 4, 4), 2.0))


DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


@pytest.mark.parametrize("device", DEVICES)
def test_device_augmentation_matches_cpu_on_a_fixed_seed(device: str):
    # The draws come from a CPU generator, so every device gets the same angles and flips;
    # nearest-neighbour sampling may round a pixel on an edge differently on another device.
    images = torch.randint(0, 256, (16, 3, 32, 32)).float()
    on_cpu = augment(images, Augmentation(), torch.Generator().manual_seed(5))
    on_device = augment(images.to(device), Augmentation(), torch.Generator().manual_seed(5))
    assert (on_device.cpu() != on_cpu).float().mean() < 0.01


def _photograph(width: int, height: int, noise: float, seed: int = 0) -> Image.Image:
    """A generated photograph: smooth colour waves, a few solid shapes, pixel noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    waves = [
        128 + 100 * np.sin(2 * np.pi * (fx * x + fy * y) + phase)
        for fx, fy, phase in rng.uniform(0.5, 3, (3, 3))
    ]
    image = Image.fromarray(np.stack(waves, -1).clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        left, top = rng.integers(0, width - 300), rng.integers(0, height - 300)
        size = rng.integers(100, 300, 2)
        colour = tuple(int(v) for v in rng.integers(0, 255, 3))
        draw.ellipse([left, top, left + size[0], top + size[1]], fill=colour)
    pixels = np.asarray(image).astype(float) + rng.normal(0, noise, (height, width, 3))
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def _tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(image_pixels(image)).float()


@pytest.mark.parametrize("width,height", [(1600, 1200), (1200, 1600)])
@pytest.mark.parametrize("noise", [0.0, 20.0])
def test_rotation_of_the_resized_image_is_the_studys_rotation_at_full_size(
    width: int, height: int, noise: float
):
    # The study: RandomRotation on the full photograph (nearest, black corners), then
    # Resize([224, 224]). Both from one decoded image, so that decoding plays no part.
    photograph = _photograph(width, height, noise)
    resized = _tensor(photograph.resize((224, 224), Image.Resampling.BILINEAR))[None]
    for angle in (10.0, 20.0, 30.0, -25.0):
        original = transforms.Resize([224, 224])(functional.rotate(photograph, angle))
        ours = rotate_resized(resized, torch.tensor([angle]), torch.tensor([height / width]))
        difference = (ours[0] - _tensor(original)).abs().mean().item()
        assert difference <= 8, f"{width}x{height} at {angle} degrees: {difference:.1f}/255"


def test_affine_grid_is_torchs():
    theta = torch.randn(5, 2, 3)
    ours = affine_grid(theta, 7, 11)
    torchs = torch.nn.functional.affine_grid(theta, [5, 3, 7, 11], align_corners=False)
    assert torch.allclose(ours, torchs, atol=1e-5)
