"""The LightningDataModule: collection -> split.csv (once) -> decoded batches -> augmentation."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from significance.data.balance import BALANCED
from significance.data.cache import ImageCache, open_image_cache
from significance.data.collection import Sample
from significance.data.images import UPRIGHT_SIZE, image_pixels, load_image
from significance.data.run_split import CollectionSettings, SplitSettings, make_split
from significance.data.samplers import BalancedSampler, EpochShuffle, epoch_seed
from significance.data.scan import current_hashes
from significance.data.split import read_split
from significance.data.transforms import Augmentation, Preprocessing, augment, normalize
from significance.errors import UnreadableImageError
from significance.hardware import check_global_batch, resolve_num_workers
from significance.tasks import Task

log = logging.getLogger(__name__)


class ArtworkImages(Dataset):
    """Samples of one split as (uint8 CHW image, class index, source height / width)."""

    def __init__(
        self,
        root: str | Path,
        samples: list[Sample],
        classes: tuple[str, ...],
        image_size: int,
        cache: ImageCache | None = None,
        replace_unreadable: bool = False,
    ) -> None:
        self.root = Path(root)
        self.samples = samples
        self.class_index = {name: index for index, name in enumerate(classes)}
        self.image_size = image_size
        self.cache = cache
        self.replace_unreadable = replace_unreadable

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, float]:
        sample = self.samples[index]
        if self.cache is not None and sample.path in self.cache:
            pixels = torch.from_numpy(np.array(self.cache[sample.path]))
            width, height = self.cache.upright_size(sample.path)
            return pixels, self.class_index[sample.label], height / width
        sample, image = self._load_from(index)
        pixels = torch.from_numpy(image_pixels(image))
        width, height = image.info[UPRIGHT_SIZE]
        return pixels, self.class_index[sample.label], height / width

    def _load_from(self, index: int) -> tuple[Sample, Image.Image]:
        """The sample at `index`, or, if its file broke after indexing, the next one that loads.

        Indexing already left unreadable files out; this only keeps a file damaged during a
        run from killing a training epoch, and is logged with the file's name. Validation and
        test images are never replaced (that would count one image twice): they fail clearly.
        """
        if not self.replace_unreadable:
            sample = self.samples[index]
            try:
                return sample, load_image(self.root / sample.path, self.image_size)
            except UnreadableImageError as error:
                raise UnreadableImageError(
                    f"{error}; it became unreadable after the split was made: restore it, or "
                    "start the run afresh (resume=false) to split without it"
                ) from error
        for offset in range(len(self.samples)):
            sample = self.samples[(index + offset) % len(self.samples)]
            try:
                return sample, load_image(self.root / sample.path, self.image_size)
            except UnreadableImageError as error:
                log.error("Unreadable during the run, replaced by the next image: %s", error)
        raise UnreadableImageError(f"no image of this split can be read under {self.root}")


@dataclass(frozen=True)
class LoaderSettings:
    """How the split's images are served: batches, worker processes, the image cache, the seed.

    `batch_size` is global: with N devices each process loads `batch_size / N` images, so the
    optimiser sees the study's 32 images a step whatever the number of devices.
    """

    batch_size: int = 32
    num_workers: int | str = "auto"
    cache: bool = True
    cache_dir: Path = Path("data/cache")
    seed: int = 0  # the order of the training batches and their augmentation
    sampler: str = "shuffle"  # or balanced: each class equally likely per draw


class ArtworkDataModule(L.LightningDataModule):
    """Makes one task's split once (`make_split`, into `split_file`) and serves it in batches."""

    def __init__(
        self,
        task: Task,
        preprocessing: Preprocessing,
        split_file: str | Path,
        collection: CollectionSettings,
        split: SplitSettings | None = None,
        loader: LoaderSettings | None = None,
        augmentation: Augmentation | None = None,
        test_each_epoch: bool = False,
    ) -> None:
        super().__init__()
        self.task = task
        self.preprocessing = preprocessing
        self.split_file = Path(split_file)
        self.collection = collection
        self.split = split or SplitSettings()
        self.loader = loader or LoaderSettings()
        self.augmentation = augmentation or Augmentation()
        # The test split as a second validation loader (report_test_selected): never chooses.
        self.test_each_epoch = test_each_epoch
        # What a checkpoint records of the collection.
        self.root, self.layout = collection.root, collection.layout
        self.annotations_file = collection.annotations_file
        self.datasets: dict[str, ArtworkImages] = {}
        # Augmentation draws: reseeded by seed, epoch and rank at each epoch's first batch, so
        # that the epochs after a resume draw what an uninterrupted run draws.
        self.augment_generator = torch.Generator().manual_seed(self.loader.seed)
        self.augment_epoch: int | None = None

    def prepare_data(self) -> None:
        """On one process: the demo collection if used, the split once, the image cache."""
        self.collection.ensure()
        if self.split_file.is_file():
            log.info("Reusing the split in %s", self.split_file)
        else:
            make_split(self.split_file, self.collection, self.task, self.split)
        # Decode once, here on one process per node; setup() on each rank only opens it.
        self._open_cache()

    def setup(self, stage: str | None = None) -> None:
        """On every process: read the split that `prepare_data` wrote."""
        parts = read_split(self.split_file)
        cache = self._open_cache()
        for name, samples in parts.items():
            self.datasets[name] = ArtworkImages(
                self.root,
                samples,
                self.task.classes,
                self.preprocessing.image_size,
                cache,
                replace_unreadable=name == "train",
            )

    def _open_cache(self) -> ImageCache | None:
        """The decoded images of every split (built or refreshed when stale); None when off."""
        if not self.loader.cache:
            return None
        paths = [s.path for samples in read_split(self.split_file).values() for s in samples]
        return open_image_cache(
            self.loader.cache_dir,
            self.root,
            paths,
            self.preprocessing.image_size,
            known_hashes=self._scanned_hashes if self.collection.facts_file else None,
        )

    def _scanned_hashes(self, paths: list[str]) -> dict[str, str]:
        """SHA-256 of the files the facts scan hashed and that have not changed since."""
        files = {path: self.root / path for path in paths}
        known = current_hashes(self.collection.facts_file, files.values())
        return {path: known[file] for path, file in files.items() if file in known}

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        world_size = self.trainer.world_size if self.trainer is not None else 1
        rank = self.trainer.global_rank if self.trainer is not None else 0
        check_global_batch(self.loader.batch_size, world_size)
        # Cores are a node's: they are shared by the processes of this node, not of the world.
        local_processes = self.trainer.num_devices if self.trainer is not None else 1
        workers = resolve_num_workers(
            self.loader.num_workers, local_processes, cached=self.loader.cache
        )
        dataset = self.datasets[split]
        if shuffle:
            sampler = self._training_sampler(dataset, world_size, rank)
        else:  # every image exactly once over the ranks: no padded repeats in the figures
            sampler = UnrepeatedDistributedSampler(dataset, world_size, rank, shuffle=False)
        return DataLoader(
            dataset,
            batch_size=self.loader.batch_size // world_size,
            sampler=sampler,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
            # Its own: the loader's iterator draws a seed, from the global stream otherwise,
            # and Lightning makes a fit's first iterator before on_train_epoch_start reseeds.
            generator=torch.Generator().manual_seed(epoch_seed(self.loader.seed, 0, rank, split)),
        )

    def _training_sampler(self, dataset: ArtworkImages, world_size: int, rank: int) -> Sampler:
        """An order set by seed and epoch (a resumed epoch draws the same): shuffled or balanced."""
        seed = self.loader.seed
        if self.loader.sampler == BALANCED:
            labels = [dataset.class_index[sample.label] for sample in dataset.samples]
            return BalancedSampler(labels, world_size, rank, seed=seed, trainer=self.trainer)
        return EpochShuffle(dataset, world_size, rank, seed=seed, trainer=self.trainer)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        if self.test_each_epoch:
            return [self._loader("val", shuffle=False), self._loader("test", shuffle=False)]
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        """The validation split in order: what a temperature is fitted on after training."""
        return self._loader("val", shuffle=False)

    def on_after_batch_transfer(self, batch: tuple, dataloader_idx: int) -> tuple:
        """Augment (training only) and normalise on the device the model runs on.

        Rotation happens in each source photograph's frame (its height / width rides along).
        In float32, then in the precision's own type: Lightning casts a batch before it gets
        here (`convert_input`), when it is still bytes, so `bf16-true` would get float32 images.
        """
        images, targets, aspects = batch
        images = images.float()
        if self.trainer is not None and self.trainer.training:
            if self.augment_epoch != self.trainer.current_epoch:
                self.augment_epoch = self.trainer.current_epoch
                seed = epoch_seed(self.loader.seed, self.augment_epoch, self.trainer.global_rank)
                self.augment_generator.manual_seed(seed)
            images = augment(images, self.augmentation, self.augment_generator, aspects)
        images = normalize(images, self.preprocessing)
        if self.trainer is not None:
            images = self.trainer.precision_plugin.convert_input(images)
        return images, targets
