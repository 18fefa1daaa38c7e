#!/usr/bin/env bash
# Every GPU check of the speed issue in one run (estimated 7 minutes on one H200, not yet run),
# each writing its figures into $OUT (8 files), with the log in $OUT/log.txt:
#   bash benchmarks/device_wheels.sh                   # here, once: what the GPU machine lacks
#   bash benchmarks/gpu_checks.sh                      # there: the device tool's run with
#       command "bash benchmarks/gpu_checks.sh", carry [".whl"], timeout_s 600 ($OUT is set)
#   TOY=1 OUT=/tmp/toy bash benchmarks/gpu_checks.sh   # at toy scale on a CPU, to test it
# SWEEP_EPOCHS (default 5) is the fraction of the study's 50 epochs the study sweep runs.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-experiments/gpu}
PYTHON=${PYTHON:-python3}
SWEEP_EPOCHS=${SWEEP_EPOCHS:-5}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled

# The GPU machine's image has torch, lightning, torchmetrics, pillow; the rest comes as wheels.
if ! "$PYTHON" -c "import hydra, omegaconf, imagehash" 2>/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --target /tmp/site "${WHEELS:-.whl}"/*.whl
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}

if [ "${TOY:-0}" = 1 ]; then
    DEVICE=cpu
    SCALE=demo
    export SIGNIFICANCE_DATA_DIR=$OUT/data
    OPTIONS=(--models tiny_vgg:32 --rounds 1 --steps 1 --variants fp32 bf16)
    COMPARE=(--model tiny_vgg --images 8 --min-width 160 --image-size 32 --epochs 1 --in-process)
    SWEEP_EPOCHS=1
    SWEEP=(model=tiny_vgg model.image_size=32 trainer.accelerator=cpu
        'hydra.launcher.max_parallel=2')
    WORKDIR=$OUT/work
else
    DEVICE=cuda
    SCALE=study
    OPTIONS=(--models vgg16:224 --rounds 2 --steps 5)
    # Museum-sized JPEGs: the original loop decodes each at full size, every epoch.
    COMPARE=(--model vgg16 --images 256 --epochs 2 --eval-batch 256 --precision bf16-mixed)
    # The nine tasks at once on GPU 0, at the study's sizes (experiment=study_scale).
    SWEEP=(model.pretrained=false trainer.accelerator=gpu trainer.precision=bf16-mixed
        'hydra.launcher.max_parallel=9' 'hydra.launcher.cuda_devices=[0]')
    WORKDIR=data/benchmark
fi
failed=()
# A step that fails is written down and the next one runs: device time is too scarce to stop.
step() {
    local name=$1
    shift
    echo "=== $name ($(date +%T))"
    "$@" || { echo "=== FAILED: $name"; failed+=("$name"); }
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }

machine() {
    nvidia-smi || true
    uname -a
    nproc
    "$PYTHON" -c "import torch; print(torch.__version__, torch.cuda.is_available())"
}
sweep() {
    # Generates the collection, untimed; `step` runs this in an || list, where set -e is off.
    "$PYTHON" audit.py "data.demo_scale=$SCALE" > /dev/null || return 1
    rm -rf "$WORKDIR/sweep"  # a rerun into a used folder would skip every finished job
    local sampler="" started ended status=0
    if command -v nvidia-smi > /dev/null; then  # every job's GPU memory, twice a second
        nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits -lms 500 \
            > "$OUT/sweep_gpu_memory.csv" &
        sampler=$!
    fi
    started=$(now_ms)
    "$PYTHON" train.py -m experiment=study_scale trainer=default logger=csv \
        "data.demo_scale=$SCALE" "trainer.max_epochs=$SWEEP_EPOCHS" "${SWEEP[@]}" \
        "hydra.sweep.dir=$WORKDIR/sweep" || status=$?
    ended=$(now_ms)
    [ -n "$sampler" ] && kill "$sampler"
    echo "wall_ms,epochs,exit_code" > "$OUT/sweep_time.csv"
    echo "$((ended - started)),$SWEEP_EPOCHS,$status" | tee -a "$OUT/sweep_time.csv"
    # Only a few files come back from the GPU machine: the sweep's own folder stays there.
    cp "$WORKDIR/sweep/summary.csv" "$OUT/sweep_summary.csv"
    cp "$WORKDIR/sweep/results.md" "$OUT/sweep_results.md"
    return "$status"
}

step machine eval 'machine > "$OUT/machine.txt" 2>&1'
step "augmentation on the device matches the CPU's on a seed" \
    "$PYTHON" -m pytest -q -p no:cacheprovider tests/test_transforms.py
step "speed options" \
    "$PYTHON" benchmarks/options.py "${OPTIONS[@]}" --device "$DEVICE" --out "$OUT/options.csv"
step "ours against the original loop" \
    "$PYTHON" benchmarks/compare.py "${COMPARE[@]}" --repeats 1 --device "$DEVICE" \
    --workdir "$WORKDIR" --out "$OUT/benchmark.csv"
step "the study sweep, $SWEEP_EPOCHS of 50 epochs" sweep
echo "figures in $OUT; failed: ${failed[*]:-none}"
[ ${#failed[@]} -eq 0 ]
