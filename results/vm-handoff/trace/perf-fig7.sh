#!/bin/sh
# Runs in the dfuse-vm guest: Fig. 7 (dfuse only) under perf record -a.
set -e
OUT=scratch/perf-$1
mkdir -p $OUT
perf record -a -F 199 -e cpu-clock -g -o /tmp/perf.data 2> $OUT/perf-record.log &
P=$!
tools/dfuse-reproduce --net inprocess --profile quick --figures fig7 --modes ${2:-dfuse} \
  --keep-going --out scratch --run prun-$1 || true
kill -INT $P; wait $P || true
perf report -i /tmp/perf.data --no-children --sort comm,dso -g none --stdio > $OUT/by-dso.txt 2>&1 || true
perf report -i /tmp/perf.data --no-children --sort comm,dso,sym -g none --stdio > $OUT/by-sym.txt 2>&1 || true
perf report -i /tmp/perf.data --no-children --comm dfuse-dfuse --sort sym -g caller,0.5,callee --stdio > $OUT/daemon-callers.txt 2>&1 || true
