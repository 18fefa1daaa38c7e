"""The decoded-image cache: the pixels of direct decoding, refreshed on change, safe in parallel."""

import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from significance.data.cache import cache_folder, open_image_cache
from significance.data.images import image_pixels, load_image

SIZE = 24


def _write_images(root: Path, count: int = 6) -> list[str]:
    """JPEG, PNG with alpha and an EXIF-rotated JPEG of different sizes."""
    generator = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    names = []
    for index in range(count):
        pixels = generator.integers(0, 255, (40 + 7 * index, 60, 3), dtype=np.uint8)
        name = f"img{index}.jpg" if index % 2 else f"img{index}.png"
        image = Image.fromarray(pixels)
        if name.endswith(".png"):
            image = image.convert("RGBA")
        exif = Image.Exif()
        exif[0x0112] = 6  # rotated: load_image must turn it upright
        image.save(root / name, exif=exif) if name.endswith(".jpg") else image.save(root / name)
        names.append(name)
    return names


def _expected(root: Path, name: str, size: int = SIZE) -> np.ndarray:
    return image_pixels(load_image(root / name, size))


def _assert_matches_decoding(cache, root: Path, names: list[str], size: int = SIZE) -> None:
    for name in names:
        assert np.array_equal(cache[name], _expected(root, name, size)), name


def test_cache_returns_exactly_what_decoding_returns(tmp_path: Path):
    names = _write_images(tmp_path / "collection")
    cache = open_image_cache(tmp_path / "cache", tmp_path / "collection", names, SIZE)
    assert cache.images.shape == (len(names), 3, SIZE, SIZE)
    _assert_matches_decoding(cache, tmp_path / "collection", names)


def test_cache_records_each_upright_photographs_full_size(tmp_path: Path, monkeypatch):
    # Rotation happens in the source's frame, so the cache keeps its shape, turned upright.
    names = _write_images(tmp_path / "collection")
    root = tmp_path / "collection"
    open_image_cache(tmp_path / "cache", root, names, SIZE)
    monkeypatch.setattr("significance.data.cache.load_image", _fail)
    cache = open_image_cache(tmp_path / "cache", root, names, SIZE)  # from the index alone
    for index, name in enumerate(names):
        height = 40 + 7 * index
        # The JPEGs carry EXIF orientation 6 (a quarter turn): upright, they stand tall.
        expected = (height, 60) if name.endswith(".jpg") else (60, height)
        assert cache.upright_size(name) == expected, name


def test_second_open_decodes_nothing(tmp_path: Path, monkeypatch):
    names = _write_images(tmp_path / "collection")
    open_image_cache(tmp_path / "cache", tmp_path / "collection", names, SIZE)
    monkeypatch.setattr("significance.data.cache.load_image", _fail)
    cache = open_image_cache(tmp_path / "cache", tmp_path / "collection", names, SIZE)
    _assert_matches_decoding(cache, tmp_path / "collection", names)


def _fail(*args, **kwargs):
    raise AssertionError("decoded although cached")


def test_changed_file_is_decoded_again(tmp_path: Path):
    root = tmp_path / "collection"
    names = _write_images(root)
    before = open_image_cache(tmp_path / "cache", root, names, SIZE)[names[1]].copy()
    Image.new("RGB", (50, 30), (10, 200, 30)).save(root / names[1])
    cache = open_image_cache(tmp_path / "cache", root, names, SIZE)
    assert not np.array_equal(cache[names[1]], before)
    _assert_matches_decoding(cache, root, names)


def test_content_hash_decides_not_the_file_time(tmp_path: Path, monkeypatch):
    root = tmp_path / "collection"
    names = _write_images(root)
    generator = np.random.default_rng(1)
    pixels = generator.integers(0, 255, (30, 50, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(root / "raw.bmp")  # uncompressed: the size is fixed
    names.append("raw.bmp")
    first = open_image_cache(tmp_path / "cache", root, names, SIZE)["raw.bmp"].copy()
    # Touched, same content: nothing is decoded again.
    os.utime(root / "raw.bmp", ns=(0, 10**18))
    monkeypatch.setattr("significance.data.cache.load_image", _fail)
    assert np.array_equal(open_image_cache(tmp_path / "cache", root, names, SIZE)["raw.bmp"], first)
    monkeypatch.undo()
    # Same byte count, other pixels: decoded again.
    size = (root / "raw.bmp").stat().st_size
    Image.fromarray(255 - pixels).save(root / "raw.bmp")
    assert (root / "raw.bmp").stat().st_size == size
    cache = open_image_cache(tmp_path / "cache", root, names, SIZE)
    assert not np.array_equal(cache["raw.bmp"], first)
    _assert_matches_decoding(cache, root, names)


def test_other_image_size_is_another_cache(tmp_path: Path):
    root = tmp_path / "collection"
    names = _write_images(root)
    small = open_image_cache(tmp_path / "cache", root, names, SIZE)
    large = open_image_cache(tmp_path / "cache", root, names, 2 * SIZE)
    assert small.folder != large.folder
    assert large.images.shape[-1] == 2 * SIZE
    _assert_matches_decoding(large, root, names, 2 * SIZE)


def test_tasks_sharing_a_collection_do_not_evict_each_other(tmp_path: Path, monkeypatch):
    root = tmp_path / "collection"
    names = _write_images(root)
    open_image_cache(tmp_path / "cache", root, names[:3], SIZE)
    open_image_cache(tmp_path / "cache", root, names[3:], SIZE)
    monkeypatch.setattr("significance.data.cache.load_image", _fail)
    _assert_matches_decoding(open_image_cache(tmp_path / "cache", root, names, SIZE), root, names)


def _build(cache_dir: str, root: str, names: list[str]) -> None:
    cache = open_image_cache(cache_dir, root, names, SIZE, threads=1)
    _assert_matches_decoding(cache, Path(root), names)


def test_two_processes_building_at_once_both_get_a_correct_cache(tmp_path: Path):
    root = tmp_path / "collection"
    names = _write_images(root, count=12)
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_build, args=(str(tmp_path / "cache"), str(root), names))
        for _ in range(2)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [process.exitcode for process in processes] == [0, 0]
    folder = cache_folder(tmp_path / "cache", root, SIZE)
    assert len(list(folder.glob("images-*.npy"))) == 1
    assert not list(folder.glob("*.partial"))


def test_datamodule_serves_cached_pixels(tmp_path: Path, demo_dir: Path):
    from significance.data.datamodule import ArtworkDataModule, LoaderSettings
    from significance.data.run_split import CollectionSettings
    from significance.data.transforms import Preprocessing
    from significance.tasks import Task

    task = Task("icons/location", 2, "icons", "location", ("cyprus", "other"))
    kwargs = dict(
        task=task,
        preprocessing=Preprocessing(SIZE, (0.5,) * 3, (0.5,) * 3),
        split_file=tmp_path / "split.csv",
        collection=CollectionSettings(demo_dir),
    )
    cached = ArtworkDataModule(**kwargs, loader=LoaderSettings(cache_dir=tmp_path / "cache"))
    cached.prepare_data()
    cached.setup()
    direct = ArtworkDataModule(**kwargs, loader=LoaderSettings(cache=False))
    direct.setup()
    assert cached.datasets["train"].cache is not None and direct.datasets["train"].cache is None
    for index in range(len(direct.datasets["train"])):
        first, second = cached.datasets["train"][index], direct.datasets["train"][index]
        assert first[1] == second[1] and first[0].equal(second[0])


def test_the_cache_takes_the_hashes_the_facts_scan_made(
    tmp_path: Path, demo_dir: Path, monkeypatch
):
    from significance.data import cache
    from significance.data.datamodule import ArtworkDataModule, LoaderSettings
    from significance.data.run_split import CollectionSettings
    from significance.data.transforms import Preprocessing
    from significance.tasks import Task

    monkeypatch.setattr(cache, "file_sha256", lambda path: pytest.fail(f"hashed {path} again"))
    datamodule = ArtworkDataModule(
        Task("icons/location", 2, "icons", "location", ("cyprus", "other")),
        Preprocessing(SIZE, (0.5,) * 3, (0.5,) * 3),
        tmp_path / "split.csv",
        CollectionSettings(demo_dir, facts_file=tmp_path / "facts.sqlite"),
        loader=LoaderSettings(cache_dir=tmp_path / "cache"),
    )
    datamodule.prepare_data()  # scans (and hashes) each file once, then builds the cache
    datamodule.setup()
    train = datamodule.datasets["train"]
    assert train.cache is not None and all(s.path in train.cache for s in train.samples)
    # Once the cache holds every file as it is, it asks for no hashes at all.
    paths = [s.path for s in train.samples]
    asked = open_image_cache(
        tmp_path / "cache", demo_dir, paths, SIZE, known_hashes=lambda p: pytest.fail(f"{p}")
    )
    assert all(path in asked for path in paths)


@pytest.mark.parametrize("enabled", [True, False])
def test_data_cache_switch_in_training(compose_train, tmp_path: Path, enabled: bool):
    from significance.training.train import train

    cfg = compose_train(
        "task=icons/location",
        "trainer.max_epochs=1",
        f"data.cache={str(enabled).lower()}",
        f"data.cache_dir={tmp_path}/cache",
    )
    assert train(cfg)["status"] == "ok"
    assert (tmp_path / "cache").is_dir() == enabled


def test_cached_data_needs_few_workers(monkeypatch):
    from significance.hardware import resolve_num_workers

    monkeypatch.setattr("os.sched_getaffinity", lambda _: set(range(16)), raising=False)
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)  # tests run inside a SLURM job
    assert resolve_num_workers("auto", 1) == 8
    assert resolve_num_workers("auto", 1, cached=True) == 2
    assert resolve_num_workers("auto", 8, cached=True) == 0  # one spare core a process
    assert resolve_num_workers(3, 1, cached=True) == 3
    # A SLURM task's cores are its own (--cpus-per-task), not shared with the node's ranks.
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "8")
    assert resolve_num_workers("auto", 4) == 7


def test_workers_share_the_cores_of_a_node_not_of_the_world(tmp_path: Path, monkeypatch):
    from types import SimpleNamespace

    from significance.data.datamodule import ArtworkDataModule, LoaderSettings
    from significance.data.run_split import CollectionSettings
    from significance.data.transforms import Preprocessing
    from significance.tasks import Task

    monkeypatch.setattr("os.sched_getaffinity", lambda _: set(range(16)), raising=False)
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)  # tests run inside a SLURM job
    task = Task("icons/location", 2, "icons", "location", ("cyprus", "other"))
    datamodule = ArtworkDataModule(
        task,
        Preprocessing(SIZE, (0.5,) * 3, (0.5,) * 3),
        tmp_path / "split.csv",
        CollectionSettings(tmp_path),
        loader=LoaderSettings(cache=False),
    )
    datamodule.datasets["train"] = list(range(8))
    # Two nodes of two processes: each node's 16 cores feed its own two processes.
    datamodule.trainer = SimpleNamespace(world_size=4, num_devices=2, global_rank=0)
    assert datamodule.train_dataloader().num_workers == 16 // 2 - 1
    assert datamodule.train_dataloader().batch_size == 32 // 4


def test_a_file_broken_or_gone_after_indexing_is_left_out_not_fatal(tmp_path: Path):
    root = tmp_path / "collection"
    names = _write_images(root)
    (root / names[0]).write_bytes((root / names[0]).read_bytes()[:100])  # truncated
    (root / names[1]).unlink()
    cache = open_image_cache(tmp_path / "cache", root, names, SIZE)
    assert names[0] not in cache and names[1] not in cache
    _assert_matches_decoding(cache, root, names[2:])


def test_cache_pickles_as_a_file_name_not_its_pixels(tmp_path: Path):
    import pickle

    names = _write_images(tmp_path / "collection")
    cache = open_image_cache(tmp_path / "cache", tmp_path / "collection", names, SIZE)
    data = pickle.dumps(cache)  # what a spawned DataLoader worker receives
    assert len(data) < cache.images.nbytes / 4
    _assert_matches_decoding(pickle.loads(data), tmp_path / "collection", names)
