#!/usr/bin/env bash
# Wheels of what the GPU machine's Python (3.12, with torch, lightning, torchmetrics, pillow,
# numpy, scipy, tqdm, matplotlib, filelock) lacks, into .whl/ (git-ignored), for
# benchmarks/gpu_checks.sh to install there: `bash benchmarks/device_wheels.sh` (about 5 MB).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .whl  # one version of each: two stop the whole install there
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl \
    hydra-core==1.3.8 omegaconf==2.3.1 imagehash==4.3.2 PyWavelets==1.9.0
# Published as a source archive only: built here (pure Python).
python3 -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3
ls -l .whl
