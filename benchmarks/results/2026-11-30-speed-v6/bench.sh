#!/bin/bash
# This session's speed measurements, machine otherwise idle (background training paused).
# /tmp/old: a git worktree of ea1e450 (the session start); /tmp/prof/old_ardmzip.py (from
# ../2026-11-30-speed-v4) runs its CLI.
cd /work/main
R=benchmarks/results/2026-11-30-speed-v6
mkdir -p $R
P=/tmp/prof/a.png      # alfred-schrock-shoE2y51uX0.webp of eval/Unsplash30 as PNG, 768x608
kill -STOP $(pgrep -f "ardmzip.train") 2>/dev/null
sleep 2
uptime
python /tmp/prof/old_ardmzip.py compress -q -f $P -o /tmp/prof/b6.ardm
python -m ardmzip compress -q -f $P -o /tmp/prof/a6.ardm
cmp /tmp/prof/a6.ardm /tmp/prof/b6.ardm && echo "photo: same bytes"
{
for lv in 6 1; do
  echo "== compress -$lv (768x608 photo)"
  python -m benchmarks.ab -n 2 --a "python -m ardmzip compress -q -f -$lv $P -o /tmp/prof/a.ardm" --b "python /tmp/prof/old_ardmzip.py compress -q -f -$lv $P -o /tmp/prof/b.ardm"
done
echo "== decompress -6 (768x608 photo)"
python -m benchmarks.ab -n 2 --a "python -m ardmzip decompress -q -f /tmp/prof/a6.ardm -o /tmp/prof/a.png" --b "python /tmp/prof/old_ardmzip.py decompress -q -f /tmp/prof/b6.ardm -o /tmp/prof/b.png"
echo "== compress 64 CIFAR-10 images as an archive"
python -m benchmarks.ab -n 3 --a "python -m ardmzip compress -q -f /tmp/cifar64.npz -o /tmp/prof/ca.ardm" --b "python /tmp/prof/old_ardmzip.py compress -q -f /tmp/cifar64.npz -o /tmp/prof/cb.ardm"
echo "== decompress the same archive"
python -m benchmarks.ab -n 3 --a "python -m ardmzip decompress -q -f /tmp/prof/ca.ardm -o /tmp/prof/ca.npz" --b "python /tmp/prof/old_ardmzip.py decompress -q -f /tmp/prof/cb.ardm -o /tmp/prof/cb.npz"
cmp /tmp/prof/ca.ardm /tmp/prof/cb.ardm && echo "CIFAR archive: same bytes"
} > $R/ab-vs-ea1e450.md 2>&1
# compare and throughput: re-run at the next commit, once both applied the ardmzip command's
# process settings (runtime.keep_freed_memory); the ab figures above are from 150bbf8
python -m benchmarks.compare ../shared/data/eval/Unsplash30 --codecs webp,jxl9,ardmzip --ardmzip-steps 4,16 --limit 4 --out $R --no-progress > $R/compare.log 2>&1
python -m benchmarks.throughput ../shared/data/eval/cifar10_test_partial.npz --limit 200 --jobs 1,2 --out $R > $R/throughput.log 2>&1
kill -CONT $(pgrep -f "ardmzip.train") 2>/dev/null
echo done
