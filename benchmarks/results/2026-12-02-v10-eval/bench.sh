#!/bin/bash
# HEAD with format 10 (three pyramid levels) and the compact container, --model auto (the default), on the 2-core AMD EPYC VM (AVX2,
# no AVX-512/VNNI), every codec in the same run and process, one file per image, every file
# decoded and checked; nothing else running.
cd /work/main
R=benchmarks/results/2026-12-02-v10-eval
E=../shared/data/eval
lscpu | grep 'Model name'; uptime
python -m benchmarks.compare $E/Unsplash30 $E/McMaster $E/Set14 \
    --codecs png,webp,jxl7,jxl9,jpegls,j2k,ardmzip --per-image --out $R --no-progress > $R/compare.log 2>&1
uptime
