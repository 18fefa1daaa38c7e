"""A small, deterministic synthetic collection covering every task, for out-of-the-box runs.

Each artwork type has its own composition (a coin is a disk on a plain ground, a fresco a
textured wall, an icon a framed panel, a manuscript a page with lines of text), and every
field of a type moves one coarse colour or layout cue of it. The cues survive a resize to
32 px, so a VGG16 trained from random weights learns them in a few epochs; jitter, noise,
varied sizes and shared hues between classes keep them from being trivial.
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from filelock import FileLock
from PIL import Image, ImageDraw

from significance.errors import ConfigurationError

log = logging.getLogger(__name__)

# Bump when the drawing changes, so that older generated collections are rebuilt.
DEMO_VERSION = "2"
ANNOTATIONS_FILE = "annotations.csv"
SAVE_OPTIONS = {".jpg": {"quality": 90}, ".png": {}}
FIELDS = ("material", "period", "location", "language", "description")

# Class -> colour cue of each field. Colours of one field are apart, but not far apart.
COIN_METAL = {"gold": (205, 165, 45), "silver": (175, 180, 190), "other": (150, 90, 55)}
COIN_GROUND = {"ancient": (110, 45, 25), "medieval": (35, 50, 120), "modern": (45, 115, 55)}
FRESCO_WALL = {"cyprus": (200, 170, 110), "italy": (185, 95, 70), "other": (120, 150, 130)}
ICON_FRAME = {"cyprus": (150, 30, 35), "other": (35, 45, 120)}
PAGE_TINT = {"france": (235, 180, 185), "italy": (235, 215, 130), "other": (170, 190, 215)}
INK = {"latin": (25, 20, 20), "other": (150, 50, 20)}


@dataclass(frozen=True)
class DemoSpec:
    """How many images of each artwork type, and the share photographed twice."""

    coins: int = 150
    frescoes: int = 150
    icons: int = 150
    manuscripts: int = 150
    others: int = 150
    second_photo_share: float = 0.1


# The collections the generator makes: `demo` trains in minutes on a laptop; `study` has the
# original study's images per artwork type (its README: 2514 coins, 718 frescoes, 1678 icons,
# 366 manuscripts, 718 others), to time a whole sweep at the study's size.
DEMO_SCALES = {
    "demo": DemoSpec(),
    "study": DemoSpec(coins=2514, frescoes=718, icons=1678, manuscripts=366, others=718),
}


def demo_spec(scale: str) -> DemoSpec:
    """The generator's spec of a named scale (`data.demo_scale`)."""
    if scale not in DEMO_SCALES:
        raise ConfigurationError(
            f"data.demo_scale must be one of {sorted(DEMO_SCALES)}, got {scale!r}"
        )
    return DEMO_SCALES[scale]


def ensure_demo_collection(root: str | Path, seed: int = 0, spec: DemoSpec | None = None) -> Path:
    """Generate the demo collection into `root` unless an identical one is already there."""
    root = Path(root)
    spec = spec or DemoSpec()
    stamp = f"version={DEMO_VERSION} seed={seed} spec={spec}"
    stamp_file = root / "DEMO_COLLECTION"
    if stamp_file.is_file() and stamp_file.read_text().strip() == stamp:
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    # One generator at a time: parallel sweep jobs would otherwise delete each other's result.
    with FileLock(str(root.with_name(f".{root.name}.lock"))):
        if stamp_file.is_file() and stamp_file.read_text().strip() == stamp:
            return root
        _generate_into(root, stamp, stamp_file, seed, spec)
    return root


def _generate_into(root: Path, stamp: str, stamp_file: Path, seed: int, spec: DemoSpec) -> None:
    """Generate beside `root`, then swap it in."""
    log.info(
        "Generating the synthetic demo collection into %s (used when data.root is unset)", root
    )
    # Build beside the target and rename, so an interrupted run never leaves half a collection.
    staging = root.with_name(f".{root.name}.{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    generate_demo_collection(staging, seed=seed, spec=spec)
    (staging / stamp_file.name).write_text(stamp + "\n")
    shutil.rmtree(root, ignore_errors=True)
    os.replace(staging, root)


def generate_demo_collection(root: str | Path, seed: int = 0, spec: DemoSpec | None = None) -> int:
    """Write the images and `annotations.csv` into `root`; returns the number of images."""
    root = Path(root)
    spec = spec or DemoSpec()
    rng = np.random.default_rng(seed)
    rows = []
    for artwork_type, count in (
        ("coins", spec.coins),
        ("frescoes", spec.frescoes),
        ("icons", spec.icons),
        ("manuscripts", spec.manuscripts),
        ("others", spec.others),
    ):
        labels = _balanced_labels(artwork_type, count, rng)
        objects = 0
        for index in range(count):
            if index > 0 and rng.random() < spec.second_photo_share:
                # A second photograph of the previous object: same labels, same object id.
                for values in labels.values():
                    values[index] = values[index - 1]
            else:
                objects += 1
            fields = {field: str(values[index]) for field, values in labels.items()}
            suffix = ".png" if index % 3 == 2 else ".jpg"
            relative = Path("images") / artwork_type / f"{artwork_type}_{index:04d}{suffix}"
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            _draw(artwork_type, fields, rng).save(root / relative, **SAVE_OPTIONS[suffix])
            rows.append(
                {
                    "path": relative.as_posix(),
                    "artwork_type": artwork_type,
                    **{field: fields.get(field, "") for field in FIELDS},
                    "object_id": f"{artwork_type}-{objects:04d}",
                }
            )
    with (root / ANNOTATIONS_FILE).open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "artwork_type", *FIELDS, "object_id"])
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def _balanced_labels(artwork_type: str, count: int, rng: np.random.Generator) -> dict[str, list]:
    """Per field of the type, `count` labels in equal shares, shuffled independently."""
    fields = {
        "coins": {"material": COIN_METAL, "period": COIN_GROUND},
        "frescoes": {"location": FRESCO_WALL, "period": {"byzantine": 0, "other": 0}},
        "icons": {"location": ICON_FRAME},
        "manuscripts": {
            "location": PAGE_TINT,
            "language": INK,
            "description": {"figure": 0, "text": 0, "text&figure": 0},
        },
    }.get(artwork_type, {})
    return {
        field: list(rng.permutation(np.resize(np.array(list(classes)), count)))
        for field, classes in fields.items()
    }


def _jitter(colour: tuple[int, int, int], rng: np.random.Generator, amount: int = 28) -> tuple:
    """The colour moved by up to `amount` per channel."""
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in colour)


def _draw(artwork_type: str, fields: dict[str, str], rng: np.random.Generator) -> Image.Image:
    """One synthetic photograph of an artwork of `artwork_type` with the given field values."""
    width, height = (int(v) for v in rng.integers(64, 200, size=2))
    draw_function = {
        "coins": _draw_coin,
        "frescoes": _draw_fresco,
        "icons": _draw_icon,
        "manuscripts": _draw_manuscript,
    }.get(artwork_type, _draw_other)
    image = draw_function(width, height, fields, rng)
    # Sensor noise and uneven lighting, as in real photographs.
    pixels = np.asarray(image, dtype=np.float32)
    pixels += rng.normal(0, 12, size=pixels.shape)
    pixels *= np.linspace(rng.uniform(0.8, 1.0), rng.uniform(1.0, 1.15), width)[None, :, None]
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _draw_coin(width: int, height: int, fields: dict, rng: np.random.Generator) -> Image.Image:
    image = Image.new("RGB", (width, height), _jitter(COIN_GROUND[fields["period"]], rng))
    draw = ImageDraw.Draw(image)
    radius = min(width, height) * rng.uniform(0.3, 0.45)
    cx, cy = width / 2 + rng.normal(0, width / 20), height / 2 + rng.normal(0, height / 20)
    metal = _jitter(COIN_METAL[fields["material"]], rng)
    draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=metal)
    inner = radius * 0.6  # a darker relief in the middle
    draw.ellipse((cx - inner, cy - inner, cx + inner, cy + inner), outline=_jitter(metal, rng, 60))
    return image


def _draw_fresco(width: int, height: int, fields: dict, rng: np.random.Generator) -> Image.Image:
    image = Image.new("RGB", (width, height), _jitter(FRESCO_WALL[fields["location"]], rng))
    draw = ImageDraw.Draw(image)
    for _ in range(12):  # cracks and stains of the plaster
        x, y = rng.integers(0, width), rng.integers(0, height)
        draw.line((x, y, x + rng.integers(-30, 30), y + rng.integers(-30, 30)), fill=(90, 80, 70))
    cx, cy, size = width * rng.uniform(0.35, 0.65), height * 0.55, min(width, height) * 0.22
    draw.rectangle((cx - size, cy, cx + size, cy + 2 * size), fill=_jitter((80, 60, 90), rng))
    if fields["period"] == "byzantine":  # a golden halo behind the figure's head
        draw.ellipse((cx - size, cy - 1.6 * size, cx + size, cy + 0.4 * size), fill=(215, 180, 60))
    draw.ellipse((cx - size / 2, cy - size, cx + size / 2, cy), fill=_jitter((200, 160, 130), rng))
    return image


def _draw_icon(width: int, height: int, fields: dict, rng: np.random.Generator) -> Image.Image:
    image = Image.new("RGB", (width, height), _jitter((60, 50, 40), rng))
    draw = ImageDraw.Draw(image)
    margin = int(min(width, height) * rng.uniform(0.03, 0.1))
    frame = int(min(width, height) * 0.15)
    panel = (margin, margin, width - margin, height - margin)
    draw.rectangle(panel, fill=_jitter(ICON_FRAME[fields["location"]], rng))
    inner = (margin + frame, margin + frame, width - margin - frame, height - margin - frame)
    draw.rectangle(inner, fill=_jitter((210, 175, 70), rng))
    cx, cy = width / 2, height / 2
    draw.ellipse((cx - frame, cy - 1.5 * frame, cx + frame, cy + 0.5 * frame), fill=(120, 80, 60))
    return image


def _draw_manuscript(
    width: int, height: int, fields: dict, rng: np.random.Generator
) -> Image.Image:
    image = Image.new("RGB", (width, height), _jitter(PAGE_TINT[fields["location"]], rng))
    draw = ImageDraw.Draw(image)
    ink = _jitter(INK[fields["language"]], rng, 15)
    description = fields["description"]
    figure_bottom = int(height * (0.85 if description == "figure" else 0.45))
    if description in ("figure", "text&figure"):
        draw.rectangle(
            (width * 0.15, height * 0.1, width * 0.85, figure_bottom), fill=(40, 90, 150)
        )
    if description in ("text", "text&figure"):
        top = height * 0.1 if description == "text" else figure_bottom + 4
        thickness = max(2.0, height / 30)  # thick enough to keep its colour at 32 px
        for y in np.arange(top, height * 0.9, 2.2 * thickness):
            draw.rectangle((width * 0.1, y, width * rng.uniform(0.7, 0.9), y + thickness), fill=ink)
    return image


def _draw_other(width: int, height: int, fields: dict, rng: np.random.Generator) -> Image.Image:
    image = Image.new("RGB", (width, height), _jitter(tuple(rng.integers(40, 220, 3)), rng))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 8))):  # random objects of random colours
        x0, y0 = rng.integers(0, width), rng.integers(0, height)
        box = (x0, y0, x0 + rng.integers(10, 60), y0 + rng.integers(10, 60))
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    return image
