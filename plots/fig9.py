#!/usr/bin/env python3
"""Figure 9 of the paper: the fileserver, webserver and netsfs personalities
(dfuse-personality, Table 2) at 0 % and 100 % contention. Top: measured
throughput and latency; bottom: relative to writethrough with the paper's
DFUSE / WT+OCC."""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib.pyplot as plt

import common
import paper

PERSONALITIES = ["fileserver", "webserver", "netsfs"]


def draw(run: Path, out: Path) -> list[Path]:
    rows = common.read_rows(run, "fig9")
    modes = common.modes_in(rows)
    cases = [(p, c) for p in PERSONALITIES for c in (0, 100)
             if common.lookup(rows, personality=p, contention_pct=c)]
    labels = [f"{p}\n{c}%" for p, c in cases]
    fig, axes = plt.subplots(2, 2, figsize=(14, 7.5), sharex=True)
    for col, (field, unit, k) in enumerate([("throughput_mb_s", "MB/s", 0),
                                           ("lat_mean_ms", "ms per op", 1)]):
        measured, errors = common.series(rows, field, modes, [
            dict(personality=p, contention_pct=c) for p, c in cases])
        common.bars(axes[0][col], labels, measured, unit, errors)
        axes[0][col].set_title("throughput" if k == 0 else "latency")
        rel = common.relative_to_writethrough(measured)
        ref = [paper.FIG9[case]["dfuse"][k] / paper.FIG9[case]["writethrough"][k] for case in cases]
        common.ratio_panel(axes[1][col], labels, rel, ref,
                           ("throughput" if k == 0 else "latency") + " / writethrough")
    axes[0][0].legend(fontsize=8)
    axes[1][0].legend(fontsize=8)
    fig.suptitle(f"Fig. 9: filebench-style personalities ({rows[0]['nodes']} nodes x "
                 f"{rows[0]['threads_per_node']} threads), 0 % and 100 % contention")
    fig.tight_layout()
    return common.save(fig, out, "fig9")


if __name__ == "__main__":
    sys.exit(common.main(draw, __doc__))
