#!/bin/bash
# Prepare a lent GPU's call that continues the s2d run (README.md here, "On a lent GPU").
# Run on the development machine, in the repository root. Everything it writes is ignored by git.
set -euo pipefail
DATA=${1:-../shared/data/train}
mkdir -p runs/gpu-data .whl
cp -r "$DATA/imagenet_samples" "$DATA/imagecompression_info" runs/gpu-data/
# for benchmarks/gpu_check.sh: the CIFAR-10 test array and four Unsplash30 photos (measurements only)
mkdir -p runs/gpu-data/eval/photos
cp "$DATA/../eval/cifar10_test_partial.npz" runs/gpu-data/eval/
ls "$DATA/../eval/Unsplash30/"*.webp | head -4 | xargs -I{} cp {} runs/gpu-data/eval/photos/
version() { python3 -c "import importlib.metadata as m; print(m.version('$1'))"; }
# the device's python is 3.12 with torch, numpy, pillow, click, tqdm, tifffile; these two are missing
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "constriction==$(version constriction)"
python3 -m pip download -q --no-deps --only-binary=:all: -d .whl "pypng==$(version pypng)"
for pkg in pytest pluggy iniconfig packaging; do        # tests/test_gpu.py (gpu_check.sh)
    python3 -m pip download -q --no-deps --only-binary=:all: -d .whl "$pkg==$(version $pkg)"
done
du -shc runs/gpu-data .whl models/checkpoints/s2d.ckpt.pt
echo 'now: run(command="bash models/checkpoints/gpu_run.sh 480", carry=["runs/gpu-data", ".whl"], timeout_s=600)'
echo 'or, training then the GPU checks: run(command="bash models/checkpoints/gpu_run.sh 300; bash benchmarks/gpu_check.sh", ...)'
