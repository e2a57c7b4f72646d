#!/bin/bash
# On a lent GPU (the device machine), in the repository root: continue the s2d run from the
# committed checkpoint for SECONDS (default 480) of training, then leave the slim checkpoint
# and the log in $OUT (copy them over models/checkpoints/s2d.* here). gpu_prepare.sh first.
# DEVICE=cpu runs the same plumbing here for a check.
set -uo pipefail
SECONDS_BUDGET=${1:-480}
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
if ! python3 -c "import constriction, png" 2>/dev/null; then       # the device lacks these two
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
mkdir -p runs/s2d-gpu
cp models/checkpoints/s2d.ckpt.pt runs/s2d-gpu/ckpt.pt
cp models/checkpoints/s2d.log.jsonl runs/s2d-gpu/log.jsonl
[ "$DEVICE" = cuda ] && nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv
# the run's own arguments (README.md here) with the device's data, batch and crop; the time
# budget is the run's total, so the cosine stays where it is; timeout ends this call's share
# (a checkpoint is written every 60 s of a time-limited run, and at --ckpt-every steps)
timeout -s INT "$SECONDS_BUDGET" python3 -m ardmzip.train runs/gpu-data/imagenet_samples \
    runs/gpu-data/imagecompression_info --out runs/s2d-gpu --trunk s2d --channels 96 \
    --dilations 1,2,1,4,1,8,1,2 --fine-channels 48 --fine-dilations 1 --cross-anchor \
    --interlace-fraction 0.9 --chroma-fraction 0.1 --crop 64 --batch 128 --lr 2e-3 --warmup 200 \
    --qat-from 0 --steps 100000000 --time-limit 30000 --bf16 --log-every 50 --ckpt-every 100 --seed 41 \
    --device "$DEVICE" --quiet
echo "train exit $?"
tail -2 runs/s2d-gpu/log.jsonl
python3 -m ardmzip.train --slim runs/s2d-gpu/ckpt.pt "$OUT/s2d.ckpt.pt"
cp runs/s2d-gpu/log.jsonl "$OUT/s2d.log.jsonl"
