#!/usr/bin/env python3
"""Beyond the paper: how long lease operations take, as cumulative
distributions over every point of the run. Acquire: a client waiting for a
lease from the manager (including any revocation it causes elsewhere).
Revoke: a client giving a lease back (write-back of its dirty data included).
For dfuse also the kernel side: the kernel's lease upcall as the daemon
answers it, and the kernel's release before a revoke is acknowledged.
Histogram buckets are powers of two (util/stats.h), so the steps are coarse."""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib.pyplot as plt

import common

METRICS = [("lease.acquire", "lease acquire (client agent)"),
           ("lease.revoke_handler", "lease revoke (client agent)"),
           ("kernel_leases.upcall", "dfuse kernel lease upcall"),
           ("kernel_leases.kernel_release", "dfuse kernel release on revoke")]


def cdf(hist: dict[int, int]) -> tuple[list[float], list[float]]:
    total = sum(hist.values())
    xs, ys, run = [], [], 0
    for le in sorted(hist):
        run += hist[le]
        xs.append(le / 1000.0)
        ys.append(run / total)
    return xs, ys


def draw(run: Path, out: Path) -> list[Path]:
    rows = common.read_rows(run, "lease_latency")
    hists: dict[tuple[str, str], dict[int, int]] = {}
    for r in rows:
        h = hists.setdefault((r["metric"], r["mode"]), {})
        h[r["le_us"]] = h.get(r["le_us"], 0) + r["count"]
    metrics = [(m, t) for m, t in METRICS if any(k[0] == m for k in hists)]
    if not metrics:
        raise common.MissingData(f"{run}/lease_latency.csv has none of the lease metrics")
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 4), squeeze=False)
    for ax, (metric, title) in zip(axes[0], metrics):
        for mode in common.MODES:
            h = hists.get((metric, mode))
            if not h:
                continue
            xs, ys = cdf(h)
            ax.step(xs, ys, where="post", color=common.COLORS[mode],
                    label=f"{mode} (n={sum(h.values())})")
        ax.set_xscale("log")
        ax.set_xlabel("latency, ms (upper bucket bound)")
        ax.set_ylabel("fraction of operations")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle("Lease operation latency (all points of the run)")
    fig.tight_layout()
    return common.save(fig, out, "lease_latency")


if __name__ == "__main__":
    sys.exit(common.main(draw, __doc__))
