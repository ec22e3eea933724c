#!/usr/bin/env python3
"""Beyond the paper: dfuse-checker's verdict per mode. Two nodes run reads and
writes of unique values on shared blocks; every block (register) whose
history is not linearizable is a consistency violation. The paper claims
strong consistency without checking it; weak write-back is the control that
shows the checker finds violations when they exist."""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib.pyplot as plt

import common


def draw(run: Path, out: Path) -> list[Path]:
    rows = common.read_rows(run, "consistency")
    modes = common.modes_in(rows)
    total = {m: sum(r["registers"] for r in rows if r["mode"] == m) for m in modes}
    bad = {m: sum(r["non_linearizable"] for r in rows if r["mode"] == m) for m in modes}
    ops = {m: sum(r["operations"] for r in rows if r["mode"] == m) for m in modes}
    runs = {m: sum(1 for r in rows if r["mode"] == m) for m in modes}
    fig, ax = plt.subplots(figsize=(7, 4.2))
    share = [100.0 * common.ratio(bad[m], total[m]) for m in modes]
    ax.bar(modes, share, color=[common.COLORS[m] for m in modes])
    for i, m in enumerate(modes):
        ax.annotate(f"{bad[m]} of {total[m]} registers\n{ops[m]} ops, {runs[m]} run(s)",
                    (i, share[i]), textcoords="offset points", xytext=(0, 4),
                    ha="center", fontsize=8)
    ax.set_ylabel("non-linearizable registers (%)")
    ax.set_ylim(0, max(share + [1.0]) * 1.3 + 5)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("Consistency: linearizability violations per mode (dfuse-checker)")
    fig.tight_layout()
    return common.save(fig, out, "consistency")


if __name__ == "__main__":
    sys.exit(common.main(draw, __doc__))
