#!/bin/bash
# --adapt timed next to PNG, WebP and JPEG-XL in one run (issue 17's open speed claim):
# every third photo of eval/Unsplash30 (sorted by name, starting with the first: 10 photos),
# the default level (K = 16) plain and with --adapt (30 tuning steps), on the 2-core Intel
# Xeon VM with the background training paused (SIGSTOP) for the whole run.
cd /work/main
R=benchmarks/results/2026-12-02-adapt-speed
FILES=$(ls ../shared/data/eval/Unsplash30/*.webp | sort | awk 'NR%3==1')
uptime
python -m benchmarks.compare $FILES --codecs png,webp,jxl7,jxl9,ardmzip --ardmzip-adapt 0,30 --per-image --out $R --no-progress > $R/compare.log 2>&1
uptime
