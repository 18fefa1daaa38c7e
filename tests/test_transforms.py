import pytest
import torch

from significance.data.transforms import Augmentation, Preprocessing, augment, normalize


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
