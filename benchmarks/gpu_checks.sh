#!/usr/bin/env bash
# Every GPU check of the speed issue in one run, each writing its figures under $OUT:
#   bash benchmarks/gpu_checks.sh                # on a GPU machine
#   TOY=1 OUT=/tmp/toy bash benchmarks/gpu_checks.sh   # at toy scale on a CPU, to test it
# The nine-task study sweep is not here: it needs generated data of the study's sizes.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-experiments/gpu}
PYTHON=${PYTHON:-python}
mkdir -p "$OUT"
if [ "${TOY:-0}" = 1 ]; then
    DEVICE=cpu
    OPTIONS=(--models tiny_vgg:32 --rounds 1 --steps 1 --variants fp32 fused_adam)
    COMPARE=(--images 8 --min-width 160 --image-size 32 --epochs 1 --repeats 1 --in-process)
    WORKDIR=$OUT/work
else
    DEVICE=cuda
    OPTIONS=(--models vgg16:224 --rounds 3 --steps 10)
    # 512 museum-sized images: the original loop decodes them at about 40 ms each per epoch.
    COMPARE=(--images 512 --epochs 2 --repeats 1)
    WORKDIR=data/benchmark
fi
{ nvidia-smi || true; uname -a; "$PYTHON" -c "import torch; print(torch.__version__)"; } \
    > "$OUT/machine.txt" 2>&1
"$PYTHON" benchmarks/options.py "${OPTIONS[@]}" --device "$DEVICE" --out "$OUT/options.csv"
for model in vgg16 tiny_vgg; do
    "$PYTHON" benchmarks/compare.py --model "$model" "${COMPARE[@]}" --device "$DEVICE" \
        --workdir "$WORKDIR" --out "$OUT/benchmark_$model.csv"
done
# Ours in bf16 where the device has it natively (the original ran fp32).
"$PYTHON" benchmarks/compare.py --model vgg16 "${COMPARE[@]}" --device "$DEVICE" \
    --precision bf16-mixed --phases train evaluate --workdir "$WORKDIR" \
    --out "$OUT/benchmark_vgg16_bf16.csv"
echo "figures in $OUT"
