#!/usr/bin/env python3
"""Figure 6 of the paper: fio without contention, random and sequential, five
read:write mixes. Top row: what each mode measured; bottom row: each mode
relative to writethrough next to the paper's DFUSE / WT+OCC."""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib.pyplot as plt

import common
import paper

PANELS = [("random", "throughput", "throughput_mib_s", "MiB/s"),
          ("sequential", "throughput", "throughput_mib_s", "MiB/s"),
          ("random", "latency", "lat_mean_ms", "ms per op"),
          ("sequential", "latency", "lat_mean_ms", "ms per op")]


def draw(run: Path, out: Path) -> list[Path]:
    rows = common.read_rows(run, "fig6")
    modes = common.modes_in(rows)
    labels = [f"{r}:{100 - r}" for r in paper.READ_PCT]
    fig, axes = plt.subplots(2, 4, figsize=(17, 7.5), sharex=True)
    for col, (pattern, metric, field, unit) in enumerate(PANELS):
        measured, errors = common.series(rows, field, modes, [
            dict(pattern=pattern, read_pct=r) for r in paper.READ_PCT])
        top, bottom = axes[0][col], axes[1][col]
        common.bars(top, labels, measured, unit, errors)
        top.set_title(f"{pattern} {metric}")
        common.ratio_panel(bottom, labels, common.relative_to_writethrough(measured),
                           common.paper_ratio(paper.FIG6[(pattern, metric)]),
                           f"{metric} / writethrough")
        bottom.set_xlabel("read:write")
    axes[0][0].legend(loc="upper left", fontsize=8)
    axes[1][0].legend(loc="upper right", fontsize=8)
    fig.suptitle("Fig. 6: fio, no contention, 4 KiB I/O "
                 f"({rows[0]['nodes']} nodes x {rows[0]['threads_per_node']} threads)")
    fig.tight_layout()
    return common.save(fig, out, "fig6")


if __name__ == "__main__":
    sys.exit(common.main(draw, __doc__))
