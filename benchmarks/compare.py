"""The original training loop and ours, side by side on one generated museum-sized collection.

Generates `--images` JPEGs of 1600x1200 px and larger in two class folders, then measures each
phase of both implementations in a fresh process (so that peak memory is the phase's own),
alternating original and ours `--repeats` times, same model, same batch, same image size:

- pipeline: the data pipeline alone, no model (decode, augment, batch, move to the device);
- train: a training epoch; evaluate: an evaluation pass over the collection;
- ours also reports the one-off cache build (decode, orient, resize once).

Each figure is the last of `--epochs` epochs (the first warms up). Writes one CSV row per
phase with images/s, peak memory and the ratio ours/original into `--out`.

    python benchmarks/compare.py --model tiny_vgg --images 96 --out experiments/bench_tiny.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import original_loop
import torch
from PIL import Image

CLASSES = ("cyprus", "other")
PHASES = ("pipeline", "train", "evaluate")


def generate_collection(root: Path, count: int, min_width: int, seed: int = 0) -> Path:
    """`count` JPEGs of about min_width x 3/4 min_width px and up to 1.5x that, in class folders."""
    stamp = root / ".generated"
    expected = f"{count} {min_width} {seed}"
    if stamp.is_file() and stamp.read_text() == expected:
        return root
    generator = np.random.default_rng(seed)
    for index in range(count):
        label = CLASSES[index % len(CLASSES)]
        scale = generator.uniform(1.0, 1.5)
        width, height = int(min_width * scale), int(min_width * 0.75 * scale)
        # Smooth colour fields plus grain: compresses like a photograph, not like noise.
        coarse = generator.integers(0, 255, (12, 16, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
        grain = generator.normal(0, 12, (height, width, 3))
        pixels = np.clip(np.asarray(image, dtype=np.float32) + grain, 0, 255).astype(np.uint8)
        (root / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(root / label / f"{index:05d}.jpg", quality=90)
    stamp.write_text(expected)
    return root


def peak_memory_mb(device: torch.device) -> dict[str, float]:
    """Peak resident memory of this process and its workers, and of the GPU if used."""
    kilobytes = (
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    )
    gpu = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else 0.0
    return {"peak_rss_mb": round(kilobytes / 1024, 1), "peak_gpu_mb": round(gpu, 1)}


def measure_original(phase: str, args: argparse.Namespace, device: torch.device) -> float:
    """Seconds of the last of `epochs` passes of one phase of the original loop."""
    from significance.models.build import build_classifier

    train = phase != "evaluate"
    batch = args.batch if train else args.eval_batch
    loader = original_loop.original_loader(args.root, train, batch, args.image_size)
    model = optimizer = None
    if phase != "pipeline":
        torch.manual_seed(0)
        model = original_loop.original_model(build_classifier(args.model, len(CLASSES)), device)
        optimizer = original_loop.original_optimizer(model)
    seconds = 0.0
    for _ in range(args.epochs):
        started = time.perf_counter()
        if phase == "pipeline":
            original_loop.pipeline_epoch(loader, device)
        elif phase == "train":
            original_loop.train_epoch(model, loader, optimizer, device)
        else:
            original_loop.evaluate(model, loader, device)
        seconds = time.perf_counter() - started
    return seconds


class EpochTimer(L.Callback):
    """Wall time of each training or test epoch, data loading included."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def _start(self, *_) -> None:
        self.started = time.perf_counter()

    def _end(self, *_) -> None:
        self.seconds.append(time.perf_counter() - self.started)

    on_train_epoch_start = on_test_epoch_start = _start
    on_train_epoch_end = on_test_epoch_end = _end


def our_datamodule(args: argparse.Namespace, part: str, preprocessing):
    """Our DataModule on the whole collection as one split part (`train` or `test`)."""
    from significance.data.datamodule import ArtworkDataModule, LoaderSettings
    from significance.data.run_split import CollectionSettings
    from significance.data.split import write_split

    task = our_task()
    collection = CollectionSettings(Path(args.root), layout="folders")
    samples, _ = collection.index(task)
    split_file = args.workdir / f"split_{part}.csv"
    write_split(split_file, samples, {sample.path: part for sample in samples})
    loader = LoaderSettings(
        batch_size=args.batch if part == "train" else args.eval_batch,
        num_workers=args.num_workers,
        cache=args.cache,
        cache_dir=args.workdir / "cache",
    )
    return ArtworkDataModule(task, preprocessing, split_file, collection, loader=loader)


def our_task():
    from significance.tasks import Task

    return Task("icons/location", 2, "icons", "location", CLASSES)


def measure_ours(phase: str, args: argparse.Namespace, device: torch.device) -> float:
    """Seconds of the last of `epochs` passes of one phase of our trainer."""
    from significance.data.transforms import augment, normalize
    from significance.hardware import keep_freed_memory
    from significance.models.build import preprocessing_for
    from significance.models.module import ArtworkClassifier

    keep_freed_memory()  # as training does
    preprocessing = preprocessing_for(args.model, args.image_size)
    datamodule = our_datamodule(args, "test" if phase == "evaluate" else "train", preprocessing)
    started = time.perf_counter()
    datamodule.prepare_data()
    if phase == "cache":
        return time.perf_counter() - started
    if phase == "pipeline":
        datamodule.setup("fit")
        loader = datamodule.train_dataloader()
        seconds = 0.0
        for _ in range(args.epochs):
            started = time.perf_counter()
            for images, _targets, aspects in loader:
                # What on_after_batch_transfer does in training, without a Trainer.
                images = augment(
                    images.to(device).float(),
                    datamodule.augmentation,
                    datamodule.augment_generator,
                    aspects,
                )
                normalize(images, preprocessing)
            seconds = time.perf_counter() - started
        return seconds
    model = ArtworkClassifier(
        task=our_task().to_dict(),
        model={"name": args.model, "pretrained": False},
        optimizer={"lr": 1e-5, "amsgrad": True, "fused": True},  # training's default
        preprocessing=preprocessing.to_dict(),
        channels_last=args.channels_last,
    )
    if args.compile:
        model.net.compile()
    timer = EpochTimer()
    trainer = L.Trainer(
        accelerator=device.type,
        devices=1,
        precision=args.precision,
        max_epochs=args.epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[timer],
        default_root_dir=str(args.workdir),
    )
    if phase == "train":
        trainer.fit(model, datamodule=datamodule)
    else:
        for _ in range(args.epochs):
            trainer.test(model, datamodule=datamodule, verbose=False)
    return timer.seconds[-1]


def measure(implementation: str, phase: str, args: argparse.Namespace) -> dict:
    """One phase of one implementation: images, seconds and peak memory."""
    device = torch.device(args.device)
    measure_phase = measure_ours if implementation == "ours" else measure_original
    seconds = measure_phase(phase, args, device)
    images = len(list(args.root.glob("*/*.jpg")))
    return {"images": images, "seconds": seconds, **peak_memory_mb(device)}


def run_child(implementation: str, phase: str, args: argparse.Namespace) -> dict:
    """Measure one phase of one implementation in a fresh process (in this one if asked)."""
    if args.in_process:
        result = measure(implementation, phase, args)
    else:
        command = [sys.executable, __file__, "--measure", implementation, phase, *args.passed]
        process = subprocess.run(command, capture_output=True, text=True, check=False)
        if process.returncode:
            raise RuntimeError(f"{implementation} {phase} failed:\n{process.stderr[-4000:]}")
        result = json.loads(process.stdout.strip().splitlines()[-1])
    result["load_avg_1min"] = round(os.getloadavg()[0], 2)
    print(implementation, phase, result, flush=True)
    return result


def compare(args: argparse.Namespace) -> list[dict]:
    """Run every phase of both implementations, alternating, and return the CSV rows."""
    generate_collection(args.root, args.images, args.min_width)
    for stale in (args.workdir / "cache").glob("*/*/images-*.npy"):
        stale.unlink()  # the one-off build is measured from an empty cache
    cache_build = run_child("ours", "cache", args)
    rows = [_row("cache_build", args, None, [cache_build])]
    for phase in args.phases:
        results: dict[str, list[dict]] = {"original": [], "ours": []}
        for _ in range(args.repeats):
            for implementation in ("original", "ours"):
                results[implementation].append(run_child(implementation, phase, args))
        rows.append(_row(phase, args, results["original"], results["ours"]))
    return rows


def _row(
    phase: str, args: argparse.Namespace, original: list[dict] | None, ours: list[dict]
) -> dict:
    def rate(results: list[dict]) -> float:
        return statistics.median(r["images"] / r["seconds"] for r in results)

    def peak(results: list[dict], key: str) -> float:
        return max(r[key] for r in results)

    row = {
        "phase": phase,
        "model": args.model,
        "images": ours[0]["images"],
        "image_size": args.image_size,
        "batch": args.batch if phase != "evaluate" else args.eval_batch,
        "device": args.device,
        "precision_ours": args.precision,
        "channels_last_ours": args.channels_last,
        "compile_ours": args.compile,
        "cache": args.cache,
        "repeats": len(ours),
        "ours_images_per_s": round(rate(ours), 2),
        "original_images_per_s": round(rate(original), 2) if original else "",
        "ratio_ours_over_original": round(rate(ours) / rate(original), 2) if original else "",
        "ours_peak_rss_mb": peak(ours, "peak_rss_mb"),
        "original_peak_rss_mb": peak(original, "peak_rss_mb") if original else "",
        "ours_peak_gpu_mb": peak(ours, "peak_gpu_mb"),
        "original_peak_gpu_mb": peak(original, "peak_gpu_mb") if original else "",
        "load_avg_1min": max(r["load_avg_1min"] for r in ours + (original or [])),
    }
    return row


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny_vgg", help="tiny_vgg, vgg16, ...")
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--min-width", type=int, default=1600, help="smallest image width")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2, help="the last one is measured")
    parser.add_argument("--repeats", type=int, default=2, help="alternating rounds")
    parser.add_argument("--eval-batch", type=int, help="evaluation batch (default: --batch)")
    parser.add_argument("--precision", default="32-true", help="ours: Lightning precision")
    parser.add_argument("--channels-last", action="store_true", help="ours: NHWC")
    parser.add_argument("--compile", action="store_true", help="ours: torch.compile the network")
    parser.add_argument("--num-workers", default="auto", help="ours: DataLoader workers")
    parser.add_argument("--no-cache", dest="cache", action="store_false")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--workdir", type=Path, default=Path("data/benchmark"))
    parser.add_argument("--out", type=Path, default=Path("experiments/benchmark.csv"))
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES))
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="measure in this process (quick; peak memory is then shared)",
    )
    parser.add_argument(
        "--measure", nargs=2, metavar=("IMPLEMENTATION", "PHASE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    args.eval_batch = args.eval_batch or args.batch
    args.passed = list(argv if argv is not None else sys.argv[1:])
    args.root = args.workdir / f"collection-{args.images}x{args.min_width}"
    return args


def main() -> None:
    args = parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure, args)))
        return
    rows = compare(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
