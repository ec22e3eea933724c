#!/usr/bin/env python3
"""Figure 8 of the paper: fio 50:50 random at 50 % contention on more and
more client nodes. Left: measured cluster throughput per mode; right: each
mode relative to writethrough with the paper's DFUSE / WT+OCC."""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib.pyplot as plt

import common
import paper


def draw(run: Path, out: Path) -> list[Path]:
    rows = common.read_rows(run, "fig8")
    modes = common.modes_in(rows)
    nodes = sorted({r["nodes"] for r in rows})
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    measured, errors = common.series(rows, "throughput_mb_s", modes,
                                     [dict(nodes=n) for n in nodes])
    for m in modes:
        left.errorbar(nodes, measured[m], yerr=common.yerr(errors[m]), marker="o",
                      color=common.COLORS[m], label=m, capsize=2)
    left.set_xlabel("client nodes")
    left.set_ylabel("MB/s (sum over nodes)")
    left.set_xticks(nodes)
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    left.set_title("throughput")
    for m, ys in common.relative_to_writethrough(measured).items():
        right.plot(nodes, ys, marker="o", color=common.COLORS[m], label=f"{m} / writethrough")
    right.plot(paper.NODES, common.paper_ratio(paper.FIG8),
               label="paper: DFUSE / WT+OCC", **common.PAPER_STYLE)
    common.ratio_axis(right, "throughput / writethrough")
    right.set_xlabel("client nodes")
    right.set_xticks(sorted(set(nodes) | set(paper.NODES)))
    right.legend(fontsize=8)
    right.set_title("relative to writethrough")
    fig.suptitle("Fig. 8: scalability, fio 50:50 random at 50 % contention")
    fig.tight_layout()
    return common.save(fig, out, "fig8")


if __name__ == "__main__":
    sys.exit(common.main(draw, __doc__))
