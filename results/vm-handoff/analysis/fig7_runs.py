#!/usr/bin/env python3
"""dfuse's Fig. 7 throughput per contention level, the sum and the median
node's (times the nodes), of each run directory given.

usage: fig7_runs.py RUN_DIR...
"""
import csv
import os
import sys

for d in sys.argv[1:]:
    rows = {int(r['contention_pct']): r for r in csv.DictReader(open(os.path.join(d, 'fig7.csv')))
            if r['mode'] == 'dfuse'}
    cells = [f"c{c}: sum {float(r['throughput_mb_s']):6.2f} median {float(r['median_node_mb_s']):5.2f}"
             for c, r in sorted(rows.items()) if c]
    print(f'{os.path.basename(d.rstrip("/")):10s}', ' | '.join(cells))
