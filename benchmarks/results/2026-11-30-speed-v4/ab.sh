#!/bin/bash
# A/B timing of whole-photo coding (the original run used an in-house timer; benchmarks/ab.py does the same with public tools): this checkout against the session start (bf4228b), same machine, same run.
cd /work/main
P=/tmp/prof/p768.png
python /tmp/prof/old_ardmzip.py compress -q -f $P -o /tmp/prof/b6.ardm
python -m ardmzip compress -q -f $P -o /tmp/prof/a6.ardm
ls -l /tmp/prof/a6.ardm /tmp/prof/b6.ardm
for lv in 6 1; do
  echo "== compress -$lv"
  python -m benchmarks.ab -n 2 --a "python -m ardmzip compress -q -f -$lv $P -o /tmp/prof/a.ardm" --b "python /tmp/prof/old_ardmzip.py compress -q -f -$lv $P -o /tmp/prof/b.ardm"
done
echo "== decompress -6"
python -m benchmarks.ab -n 2 --a "python -m ardmzip decompress -q -f /tmp/prof/a6.ardm -o /tmp/prof/a.png" --b "python /tmp/prof/old_ardmzip.py decompress -q -f /tmp/prof/b6.ardm -o /tmp/prof/b.png"
cmp <(python -c "from PIL import Image; import sys; sys.stdout.buffer.write(Image.open('/tmp/prof/a.png').tobytes())") <(python -c "from PIL import Image; import sys; sys.stdout.buffer.write(Image.open('$P').tobytes())") && echo exact
