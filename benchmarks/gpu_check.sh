#!/bin/bash
# On a lent GPU (the device machine), in the repository root, after models/checkpoints/gpu_prepare.sh
# here: the GPU tests, then coding throughput on the device (a CIFAR-10 archive, whole photos),
# results in $OUT. One device call with the training first:
#   run(command="bash models/checkpoints/gpu_run.sh 300; bash benchmarks/gpu_check.sh",
#       carry=["runs/gpu-data", ".whl"], timeout_s=600)
# DEVICE=cpu LIMIT=64 runs the same plumbing here (the GPU tests then compare CPU with CPU).
set -uo pipefail
DEVICE=${DEVICE:-cuda}
LIMIT=${LIMIT:-846}
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
if ! python3 -c "import constriction, png, pytest" 2>/dev/null; then       # the device lacks these
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
[ "$DEVICE" = cpu ] && export ARDMZIP_TEST_DEVICE=cpu
timeout 90 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py 2>&1 | tail -15 | tee "$OUT/test_gpu.txt"
timeout 90 python3 -m benchmarks.throughput runs/gpu-data/eval/cifar10_test_partial.npz --limit "$LIMIT" --jobs 1 \
    --device "$DEVICE" --references "" --out "$OUT/throughput-$DEVICE" 2>&1 | tail -6
timeout 90 python3 -m benchmarks.compare runs/gpu-data/eval/photos --codecs ardmzip --ardmzip-steps 16 \
    --ardmzip-device "$DEVICE" --out "$OUT/compare-$DEVICE" 2>&1 | tail -8
ls "$OUT"
