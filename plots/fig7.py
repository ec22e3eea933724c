#!/usr/bin/env python3
"""Figure 7 of the paper: fio 50:50 random while contention rises from 0 to
100 % (the share of each node's files shared with all nodes). Left: measured
throughput; right: relative to writethrough with the paper's DFUSE / WT+OCC."""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib.pyplot as plt

import common
import paper


def draw(run: Path, out: Path) -> list[Path]:
    rows = common.read_rows(run, "fig7")
    modes = common.modes_in(rows)
    xs = paper.CONTENTION_PCT
    measured, errors = common.series(rows, "throughput_mb_s", modes,
                                     [dict(contention_pct=c) for c in xs])
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    common.bars(left, [f"{c}%" for c in xs], measured, "MB/s", errors)
    left.set_title("throughput")
    left.set_xlabel("contention")
    left.legend(fontsize=8)
    common.ratio_panel(right, [f"{c}%" for c in xs], common.relative_to_writethrough(measured),
                       common.paper_ratio(paper.FIG7),
                       "throughput / writethrough")
    right.set_title("relative to writethrough")
    right.set_xlabel("contention")
    right.legend(fontsize=8)
    fig.suptitle(f"Fig. 7: fio 50:50 random under contention ({rows[0]['nodes']} nodes)")
    fig.tight_layout()
    return common.save(fig, out, "fig7")


if __name__ == "__main__":
    sys.exit(common.main(draw, __doc__))
