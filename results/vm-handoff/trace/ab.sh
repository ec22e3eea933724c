#!/bin/sh
# In the guest: Fig. 7, dfuse only, alternating the hack build (A) and main's (B).
for i in 1 2; do
  tools/dfuse-reproduce --net inprocess --profile quick --figures fig7 --modes dfuse \
    --build-dir scratch/build-hack --keep-going --out scratch --run hackA-$i || true
  tools/dfuse-reproduce --net inprocess --profile quick --figures fig7 --modes dfuse \
    --build-dir /work/ci/build --keep-going --out scratch --run baseB-$i || true
done
