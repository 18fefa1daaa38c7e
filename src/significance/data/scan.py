"""What each image file of a collection is: decodable or why not, its hashes, its oddities.

One scan decodes every file once (at reduced size) and keeps the result in the facts file (SQLite),
keyed by the file's path, size and modification time, so that indexing a collection for
training and auditing it cost one decode per file, ever, and a second pass is instant.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sqlite3
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image, UnidentifiedImageError
from scipy.sparse import coo_matrix, csgraph
from tqdm.auto import tqdm

from significance.data.images import file_sha256, load_image, open_image
from significance.errors import UnreadableImageError

log = logging.getLogger(__name__)

# Bump when what a scan records changes: older facts are then ignored.
SCAN_VERSION = 1
# Images are decoded at this size to be checked and hashed (JPEGs via draft: fast).
HASH_DECODE_SIZE = 128
# Near-duplicates must also agree on an 8x8 colour thumbnail to within this mean absolute
# difference (0..255): above what resized or recompressed copies differ by, below what distinct
# photographs that merely share a layout differ by (the perceptual hash is greyscale and coarse).
THUMBNAIL_TOLERANCE = 4.0
# Signatures of image formats that Pillow cannot read (offset, bytes, name).
FOREIGN_SIGNATURES = (
    (4, b"ftypheic", "HEIC"),
    (4, b"ftypheix", "HEIC"),
    (4, b"ftypmif1", "HEIF"),
    (4, b"ftypavif", "AVIF"),
    (0, b"\xff\x0a", "JPEG XL"),
    (0, b"\x00\x00\x00\x0cJXL ", "JPEG XL"),
    (0, b"<svg", "SVG"),
    (0, b"%PDF", "PDF"),
)


@dataclass(frozen=True)
class ImageFacts:
    """One file as the scan found it. `problem` is None when the file decodes."""

    problem: str | None = None  # file not found, empty file, not an image, unsupported
    detail: str = ""  #           format, truncated, too large, undecodable
    sha256: str = ""
    phash: str = ""
    format: str = ""
    mode: str = ""
    width: int = 0
    height: int = 0
    orientation: int = 1  # EXIF orientation tag; 1 is upright
    frames: int = 1
    transparency: bool = False
    thumbnail: str = ""  # 8x8 RGB, hex

    @property
    def reason(self) -> str:
        """The problem and its detail in one line, as `skipped.csv` and the audit show it."""
        return f"{self.problem}: {self.detail}" if self.detail else str(self.problem)


def scan_file(path: str | Path) -> ImageFacts:
    """Check that `path` decodes in full and record its hashes and header facts."""
    path = Path(path)
    if not path.is_file():
        return ImageFacts("file not found")
    if path.stat().st_size == 0:
        return ImageFacts("empty file")
    digest = file_sha256(path)
    try:
        with open_image(path) as image:
            header = {
                "format": image.format or "",
                "mode": image.mode,
                "width": image.width,
                "height": image.height,
                "orientation": int(image.getexif().get(0x0112, 1) or 1),
                "frames": int(getattr(image, "n_frames", 1)),
                "transparency": "transparency" in image.info or image.mode.endswith("A"),
            }
    except UnidentifiedImageError:
        foreign = _foreign_format(path)
        if foreign:
            return ImageFacts("unsupported format", f"{foreign} cannot be read", sha256=digest)
        return ImageFacts("not an image", "no image format recognised", sha256=digest)
    except Exception as error:  # a header that parses as an image but breaks the parser
        return ImageFacts("undecodable", f"{type(error).__name__}: {error}", sha256=digest)
    try:
        pixels = load_image(path, HASH_DECODE_SIZE)
    except UnreadableImageError as error:
        message = str(error).split(": ", 1)[-1]
        return ImageFacts(_decode_problem(message), message, sha256=digest, **header)
    thumbnail = np.asarray(pixels.resize((8, 8), Image.Resampling.BOX), dtype=np.uint8)
    return ImageFacts(
        sha256=digest,
        phash=str(imagehash.phash(pixels)),
        thumbnail=thumbnail.tobytes().hex(),
        **header,
    )


def _decode_problem(message: str) -> str:
    """A category for a decoder's error message."""
    lowered = message.lower()
    if lowered.startswith("too large"):
        return "too large"
    if any(word in lowered for word in ("truncated", "broken data stream", "premature end")):
        return "truncated"
    if "decoder" in lowered and "not available" in lowered:
        return "unsupported format"
    return "undecodable"


def _foreign_format(path: Path) -> str | None:
    """The name of an image format Pillow cannot read that `path` starts with, if any."""
    with path.open("rb") as handle:
        head = handle.read(32)
    for offset, signature, name in FOREIGN_SIGNATURES:
        if head[offset : offset + len(signature)] == signature:
            return name
    return None


def scan_files(
    paths: Iterable[str | Path],
    facts_file: str | Path | None = None,
    workers: int | None = None,
    description: str = "Scanning images",
) -> dict[Path, ImageFacts]:
    """Facts of every path, from the facts file where the file is unchanged, else scanned anew.

    Decoding runs in threads: Pillow and hashlib release the GIL while they work.
    """
    paths = list(dict.fromkeys(Path(p) for p in paths))
    facts_store = _FactsFile(facts_file) if facts_file else None
    facts = facts_store.get_many(paths) if facts_store else {}
    todo = [path for path in paths if path not in facts]
    if todo:
        workers = workers or min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = pool.map(scan_file, todo)
            for path, result in tqdm(
                zip(todo, results, strict=True),
                total=len(todo),
                desc=description,
                unit="img",
                disable=len(todo) < 20,
            ):
                facts[path] = result
        if facts_store:
            facts_store.put_many({path: facts[path] for path in todo})
    if facts_store:
        facts_store.close()
    return {path: facts[path] for path in paths}


def current_hashes(facts_file: str | Path, paths: Iterable[str | Path]) -> dict[Path, str]:
    """SHA-256 of the paths whose facts file entry is current (the file has not changed since)."""
    facts_store = _FactsFile(facts_file)
    try:
        facts = facts_store.get_many([Path(p) for p in paths])
    finally:
        facts_store.close()
    return {path: value.sha256 for path, value in facts.items() if value.sha256}


class _FactsFile:
    """Scan results in SQLite, keyed by absolute path and valid while size and mtime hold."""

    def __init__(self, file: str | Path) -> None:
        Path(file).parent.mkdir(parents=True, exist_ok=True)
        self.connection = sqlite3.connect(str(file), timeout=60)
        self.connection.execute(
            f"CREATE TABLE IF NOT EXISTS facts_v{SCAN_VERSION} "
            "(path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, facts TEXT)"
        )

    @staticmethod
    def _stamp(path: Path) -> tuple[int, int] | None:
        try:
            stat = path.stat()
        except OSError:
            return None  # missing files are scanned again: they may have appeared
        return stat.st_size, stat.st_mtime_ns

    def get_many(self, paths: list[Path]) -> dict[Path, ImageFacts]:
        """Cached facts of the paths whose file has not changed since it was scanned."""
        rows = {
            row[0]: row[1:]
            for row in self.connection.execute(
                f"SELECT path, size, mtime_ns, facts FROM facts_v{SCAN_VERSION}"
            )
        }
        found = {}
        for path in paths:
            row = rows.get(str(path.resolve()))
            stamp = self._stamp(path)
            if row is not None and stamp is not None and tuple(row[:2]) == stamp:
                found[path] = ImageFacts(**json.loads(row[2]))
        return found

    def put_many(self, facts: dict[Path, ImageFacts]) -> None:
        """Store facts of files that exist, with their size and mtime now."""
        rows = [
            (str(path.resolve()), *stamp, json.dumps(dataclasses.asdict(value)))
            for path, value in facts.items()
            if (stamp := self._stamp(path)) is not None
        ]
        with self.connection:
            self.connection.executemany(
                f"INSERT OR REPLACE INTO facts_v{SCAN_VERSION} VALUES (?, ?, ?, ?)", rows
            )

    def close(self) -> None:
        self.connection.close()


def duplicate_groups(facts: dict[str, ImageFacts], max_distance: int) -> list[list[str]]:
    """Sets of keys whose files are the same bytes or look alike, each sorted, in key order.

    Near-duplicates: perceptual hashes (DCT of a 32x32 greyscale) at most `max_distance` bits
    apart of 64, which survives resizing and recompression, and colour thumbnails within
    `THUMBNAIL_TOLERANCE`; -1 turns them off. Alike is
    transitive here: A~B and B~C put A, B and C in one set, as a split needs.
    """
    keys = sorted(key for key, value in facts.items() if value.problem is None)
    pairs: list[tuple[str, str]] = []
    first_by_hash: dict[str, str] = {}
    for key in keys:
        pairs.append((first_by_hash.setdefault(facts[key].sha256, key), key))
    if max_distance >= 0 and len(keys) > 1:
        hashes = np.array([int(facts[key].phash, 16) for key in keys], dtype=np.uint64)
        pairs.extend(
            (keys[i], keys[j])
            for i, j in _close_pairs(hashes, max_distance)
            if _thumbnail_distance(facts[keys[i]], facts[keys[j]]) <= THUMBNAIL_TOLERANCE
        )
    return [group for group in connected_components(keys, pairs) if len(group) > 1]


def connected_components(keys: Iterable[str], pairs: Iterable[tuple[str, str]]) -> list[list[str]]:
    """Keys joined by the pairs, each component sorted, components in the order of their first."""
    names = sorted(set(keys))
    if not names:
        return []
    index = {name: position for position, name in enumerate(names)}
    edges = np.array([(index[a], index[b]) for a, b in pairs], dtype=np.int64).reshape(-1, 2)
    graph = coo_matrix(
        (np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])),
        shape=(len(names), len(names)),
    )
    _, labels = csgraph.connected_components(graph, directed=False)
    members: dict[int, list[str]] = {}
    for name, label in zip(names, labels.tolist(), strict=True):
        members.setdefault(label, []).append(name)
    return list(members.values())


def _close_pairs(hashes: np.ndarray, max_distance: int, chunk: int = 512) -> list[tuple]:
    """Index pairs (i < j) of 64-bit hashes at most `max_distance` bits apart (all pairs)."""
    pairs = []
    for start in range(0, len(hashes), chunk):
        block = hashes[start : start + chunk]
        xor = block[:, None] ^ hashes[None, :]
        distance = _popcount(xor)
        rows, columns = np.nonzero(distance <= max_distance)
        rows += start
        keep = rows < columns
        pairs.extend(zip(rows[keep].tolist(), columns[keep].tolist(), strict=True))
    return pairs


def _popcount(values: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 (NumPy >= 2 counts them natively, at a byte per value)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(values)
    bits = np.unpackbits(values.view(np.uint8), axis=-1)
    return bits.reshape(*values.shape, 64).sum(-1)


def _thumbnail_distance(a: ImageFacts, b: ImageFacts) -> float:
    """Mean absolute difference of two images' colour thumbnails, 0..255."""
    pixels_a = np.frombuffer(bytes.fromhex(a.thumbnail), dtype=np.uint8).astype(np.int16)
    pixels_b = np.frombuffer(bytes.fromhex(b.thumbnail), dtype=np.uint8).astype(np.int16)
    return float(np.abs(pixels_a - pixels_b).mean())
