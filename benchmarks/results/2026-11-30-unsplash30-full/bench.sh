#!/bin/bash
# Every codec on all 30 Unsplash30 photos in one run (training paused), at 942f3d1.
cd /work/main
R=benchmarks/results/2026-11-30-unsplash30-full
kill -STOP $(pgrep -f "ardmzip.train") 2>/dev/null
sleep 2
uptime
python -m benchmarks.compare ../shared/data/eval/Unsplash30 --ardmzip-steps 16 --per-image --out $R --no-progress > $R/compare.log 2>&1
kill -CONT $(pgrep -f "ardmzip.train") 2>/dev/null
echo done
