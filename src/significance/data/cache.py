"""Decode once: a memory-mapped cache of decoded, upright, resized uint8 images.

One cache folder per (collection, image size) holds `images-<token>.npy`, an N x 3 x S x S
uint8 array read through a memory map, and `index.json`, which maps every file to its size,
modification time and SHA-256, and every content hash to its row and to the upright
photograph's full width and height (augmentation rotates in that frame). A file whose size or
modification time changed is hashed again; a file whose content changed is decoded again;
a change of the preprocessing (image size, this format, the Pillow version) starts a new
array. Builds run under a file lock and land by atomic renames, so any number of processes
(DDP ranks, sweep jobs) may open the same cache at once, and a crash leaves the old one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import PIL
from filelock import FileLock

from significance.data.images import UPRIGHT_SIZE, file_sha256, image_pixels, load_image
from significance.errors import UnreadableImageError
from significance.files import atomic_write

log = logging.getLogger(__name__)

# Bump when `load_image` changes what it returns, so that older caches are rebuilt.
CACHE_FORMAT = 2
INDEX_FILE = "index.json"


class ImageCache:
    """Read-only view of a built cache: `cache[path]` is the 3 x S x S uint8 image of `path`."""

    def __init__(
        self,
        folder: Path,
        images: np.ndarray,
        rows: dict[str, int],
        sizes: dict[str, tuple[int, int]],
    ) -> None:
        self.folder = folder
        self.images = images
        self.rows = rows
        self.sizes = sizes

    def __contains__(self, path: str) -> bool:
        return path in self.rows

    def __getitem__(self, path: str) -> np.ndarray:
        return self.images[self.rows[path]]

    def upright_size(self, path: str) -> tuple[int, int]:
        """The full-size (width, height) of the upright photograph cached for `path`."""
        return self.sizes[path]

    def __getstate__(self) -> dict:
        # Pickling a memmap copies its data: DataLoader workers started by spawn or forkserver
        # (macOS, Python 3.14+) would each get the whole array. Send the file's name instead.
        return {
            "folder": self.folder,
            "file": self.images.filename,
            "rows": self.rows,
            "sizes": self.sizes,
        }

    def __setstate__(self, state: dict) -> None:
        self.folder, self.rows, self.sizes = state["folder"], state["rows"], state["sizes"]
        self.images = np.load(state["file"], mmap_mode="r")


def cache_folder(cache_dir: str | Path, root: str | Path, image_size: int) -> Path:
    """The folder of one collection's cache at one image size."""
    resolved = str(Path(root).resolve())
    key = hashlib.sha256(resolved.encode()).hexdigest()[:16]
    return Path(cache_dir) / f"{Path(resolved).name}-{key}" / f"{image_size}px"


def preprocessing_key(image_size: int) -> dict:
    """Everything besides the file that decides a cached image's pixels."""
    return {"image_size": image_size, "format": CACHE_FORMAT, "pillow": PIL.__version__}


def open_image_cache(
    cache_dir: str | Path,
    root: str | Path,
    paths: Iterable[str],
    image_size: int,
    threads: int | None = None,
    known_hashes: Callable[[list[str]], dict[str, str]] | None = None,
) -> ImageCache:
    """The cache of `paths` (relative to `root`) at `image_size`, built or refreshed as needed.

    Only files that are new or whose content changed are decoded, on `threads` threads
    (Pillow releases the GIL while it decodes and resizes); the rest is copied over.
    `known_hashes(paths)` gives the SHA-256 already known for some of the files the index does
    not hold as they are now (the facts scan's); the rest are hashed here.
    """
    root = Path(root)
    folder = cache_folder(cache_dir, root, image_size)
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / "lock")):
        index = _read_index(folder, image_size)
        records = _records(root, sorted(set(paths)), index["files"], known_hashes)
        if all(
            index["files"].get(path) == record and record[2] in index["rows"]
            for path, record in records.items()
        ):
            return _open(folder, index, records)
        index = _rebuild(folder, root, index, records, image_size, threads)
        return _open(folder, index, records)


def _records(
    root: Path,
    paths: list[str],
    indexed: dict[str, list],
    known_hashes: Callable[[list[str]], dict[str, str]] | None,
) -> dict[str, list]:
    """[size, mtime_ns, sha256] of each file: the index's while size and time are unchanged."""
    records, stale = {}, {}
    for path in paths:
        try:
            stat = (root / path).stat()
        except OSError as error:  # gone since indexing: the dataset reads it directly
            log.error("Image cache: %s left out: %s", path, error)
            continue
        record = [stat.st_size, stat.st_mtime_ns]
        if indexed.get(path, [])[:2] == record:
            records[path] = indexed[path]
        else:
            stale[path] = record
    given = known_hashes(list(stale)) if stale and known_hashes else {}
    for path, record in stale.items():
        try:
            records[path] = [*record, given.get(path) or file_sha256(root / path)]
        except OSError as error:
            log.error("Image cache: %s left out: %s", path, error)
    return records


def _read_index(folder: Path, image_size: int) -> dict:
    """The folder's index, or an empty one when missing, unreadable or of other preprocessing."""
    empty = {
        "preprocessing": preprocessing_key(image_size),
        "images": None,
        "files": {},
        "rows": {},
        "sizes": {},
    }
    try:
        index = json.loads((folder / INDEX_FILE).read_text())
    except (OSError, ValueError):
        return empty
    if index.get("preprocessing") != empty["preprocessing"] or not index.get("images"):
        return empty
    if not (folder / index["images"]).is_file():
        return empty
    return index


def _open(folder: Path, index: dict, records: dict[str, list]) -> ImageCache:
    images = np.load(folder / index["images"], mmap_mode="r")
    # A file that would not decode is not in the cache.
    cached = {path: record[2] for path, record in records.items() if record[2] in index["rows"]}
    rows = {path: index["rows"][sha] for path, sha in cached.items()}
    sizes = {path: tuple(index["sizes"][sha]) for path, sha in cached.items()}
    return ImageCache(folder, images, rows, sizes)


def _decode_into(
    images: np.ndarray, row: int, path: Path, image_size: int
) -> tuple[int, int] | None:
    """Decode `path` into `images[row]`, return its upright size; None (logged) on failure."""
    try:
        image = load_image(path, image_size)
    except UnreadableImageError as error:
        log.error("Image cache: left out, unreadable: %s", error)
        return None
    images[row] = image_pixels(image)
    return image.info[UPRIGHT_SIZE]


def _rebuild(
    folder: Path,
    root: Path,
    index: dict,
    records: dict[str, list],
    image_size: int,
    threads: int | None,
) -> dict:
    """Write a new array holding the old entries and the requested ones; return its index."""
    files, source = _plan(index, records)
    rows = {sha: row for row, sha in enumerate(sorted({record[2] for record in files.values()}))}
    log.info(
        "Image cache %s: decoding %d files, keeping %d",
        folder,
        len(source),
        len(rows) - len(source),
    )
    images_name = f"images-{uuid.uuid4().hex[:12]}.npy"
    partial = folder / f"{images_name}.partial"
    old = folder / index["images"] if index["images"] else None
    decoded = _fill(partial, old, index["rows"], rows, source, root, image_size, threads)
    os.replace(partial, folder / images_name)
    new_index = _index_after(index, images_name, files, rows, set(source) - set(decoded))
    new_index["sizes"].update({sha: list(size) for sha, size in decoded.items()})
    with atomic_write(folder / INDEX_FILE) as handle:
        handle.write(json.dumps(new_index))
    # Readers that mapped an older array keep it until they close it (unlink, not truncate).
    for stale in folder.glob("images-*.npy*"):
        if stale.name != images_name:
            stale.unlink(missing_ok=True)
    return new_index


def _plan(index: dict, records: dict[str, list]) -> tuple[dict[str, list], dict[str, str]]:
    """The files the new array holds, and for each content to decode one file that has it."""
    # Keep entries of other tasks of the same collection, so that tasks do not evict each other.
    files = {**index["files"], **records}
    source: dict[str, str] = {}
    for path, record in records.items():
        if record[2] not in index["rows"]:
            source.setdefault(record[2], path)
    # An old entry that was not requested and is no longer in the old array cannot be filled.
    kept = {
        path: record
        for path, record in files.items()
        if record[2] in index["rows"] or record[2] in source
    }
    return kept, source


def _fill(
    partial: Path,
    old_file: Path | None,
    old_rows: dict[str, int],
    rows: dict[str, int],
    source: dict[str, str],
    root: Path,
    image_size: int,
    threads: int | None,
) -> dict[str, tuple[int, int]]:
    """Write the new array: old rows copied, `source` files decoded in threads.

    Returns the upright size of each content hash that decoded.
    """
    old = np.load(old_file, mmap_mode="r") if old_file is not None else None
    shape = (len(rows), 3, image_size, image_size)
    images = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=shape)
    for sha, row in rows.items():
        if sha not in source:
            images[row] = old[old_rows[sha]]
    with ThreadPoolExecutor(threads or os.cpu_count() or 1) as pool:
        sizes = list(
            pool.map(
                _decode_into,
                [images] * len(source),
                [rows[sha] for sha in source],
                [root / path for path in source.values()],
                [image_size] * len(source),
            )
        )
    images.flush()
    return {sha: size for sha, size in zip(source, sizes, strict=True) if size is not None}


def _index_after(
    index: dict, images_name: str, files: dict[str, list], rows: dict[str, int], failed: set[str]
) -> dict:
    """The new array's index, less the contents that failed to decode (their sizes to add)."""
    rows = {sha: row for sha, row in rows.items() if sha not in failed}
    return {
        "preprocessing": index["preprocessing"],
        "images": images_name,
        "files": {path: record for path, record in files.items() if record[2] not in failed},
        "rows": rows,
        "sizes": {sha: size for sha, size in index["sizes"].items() if sha in rows},
    }
