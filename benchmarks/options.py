"""Training-step time of each speed option (bf16, channels-last, fused Adam, torch.compile).

Variants are measured in alternating rounds inside one process, so that a load change on a
shared machine hits all of them alike; the figure is the median step time over the rounds.

    python benchmarks/options.py --models tiny_vgg:32 tiny_vgg:64 vgg16:32 vgg16:64 \
        --out experiments/options.csv
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from significance.hardware import keep_freed_memory, native_bf16
from significance.models.build import build_classifier

VARIANTS = {
    "fp32": {},
    "bf16": {"bf16": True},
    "channels_last": {"channels_last": True},
    "fused_adam": {"fused": True},
    "compile": {"compile": True},
}


def make_step(
    name: str,
    size: int,
    batch: int,
    device: str = "cpu",
    bf16=False,
    channels_last=False,
    fused=False,
    compile=False,
):
    """A closure that runs one training step of `name` at `size` px with the given options."""
    torch.manual_seed(0)
    model = build_classifier(name, 3)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory_format)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=1e-5, amsgrad=True, fused=True if fused else None
    )
    forward = torch.compile(model) if compile else model
    images = torch.randn(batch, 3, size, size, device=device)
    images = images.contiguous(memory_format=memory_format)
    targets = torch.randint(0, 3, (batch,), device=device)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        autocast = (
            torch.autocast(device, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        )
        with autocast:
            loss = loss_fn(forward(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()  # time the work, not its queueing

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny_vgg:32", "vgg16:32"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="steps per variant per round")
    parser.add_argument("--out", type=Path, default=Path("experiments/options.csv"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    keep_freed_memory()  # as training does
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for spec in args.models:
        name, size = spec.split(":")
        steps = {}
        for variant in args.variants:
            if variant == "bf16" and not native_bf16(args.device):
                print(f"{spec}: bf16 skipped, no native bf16 on {args.device}")
                continue
            steps[variant] = make_step(
                name, int(size), args.batch, args.device, **VARIANTS[variant]
            )
            started = time.perf_counter()
            steps[variant]()  # warm-up (and compilation)
            steps[variant]()
            print(f"{spec} {variant}: warm-up {time.perf_counter() - started:.1f} s", flush=True)
        times = {variant: [] for variant in steps}
        for _ in range(args.rounds):
            for variant, step in steps.items():
                started = time.perf_counter()
                for _ in range(args.steps):
                    step()
                times[variant].append((time.perf_counter() - started) / args.steps)
        base = statistics.median(times["fp32"])
        for variant, values in times.items():
            median = statistics.median(values)
            rows.append(
                {
                    "model": name,
                    "image_size": size,
                    "batch": args.batch,
                    "variant": variant,
                    "step_s": round(median, 4),
                    "images_per_s": round(args.batch / median, 1),
                    "speedup_vs_fp32": round(base / median, 2),
                    "device": args.device,
                    "load_avg_1min": round(os.getloadavg()[0], 2),
                }
            )
            print(rows[-1], flush=True)
        _write(args.out, rows)  # after every model: a long run killed midway keeps the rest


def _write(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
