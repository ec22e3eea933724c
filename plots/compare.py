#!/usr/bin/env python3
"""Whether two runs agree: each point's ratio of two modes in both, side by side.

A ratio of modes measured side by side is what a run of `make reproduce`
says; two runs of one commit must say the same, or nothing can tell whether
a change helped. For every point of Figs. 6 to 9 that both runs have, this
prints the ratio (dfuse / writethrough by default) in each run and how far
apart they are: the larger over the smaller, so 1.15x is 15 % whichever run
measured more. A point is within the tolerance when that is at most
1 + TOLERANCE. Every figure compares throughput, or with --latency the
mean latency, or with --median-node the fio figures' median_node_mb_s (the
median node's MB/s times the nodes, which a node that never waits at a
contended point does not move; runs from before it have none).

Exit status: 0 when every compared point is within the tolerance, 1 when
one is not, 2 when the runs have no point in common.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

# Each figure's CSV and the columns that name one of its points.
FIGURES = (("fig6", ("pattern", "read_pct")),
           ("fig7", ("contention_pct",)),
           ("fig8", ("nodes",)),
           ("fig9", ("personality", "contention_pct")))


def points(rows: list[dict], keys: tuple[str, ...]) -> list[tuple]:
    """The distinct points of a figure's rows, in the order they first appear."""
    seen: list[tuple] = []
    for r in rows:
        pt = tuple(r[k] for k in keys)
        if pt not in seen:
            seen.append(pt)
    return seen


def apart(a: float, b: float) -> float:
    """The larger ratio over the smaller (NaN when either is missing or not positive)."""
    if not (a > 0 and b > 0):  # also false for NaN
        return float("nan")
    return max(a, b) / min(a, b)


def within(entry: dict, tolerance: float) -> bool:
    """Whether a point's two ratios are at most 1 + tolerance apart (never when one is
    missing)."""
    return entry["apart"] <= 1 + tolerance  # false for NaN


def compare(run_a: Path, run_b: Path, mode: str, base: str, field: str,
            figures: tuple[str, ...] | None = None) -> list[dict]:
    """One entry per point both runs have: figure, point, both ratios and how far apart."""
    out = []
    for name, keys in FIGURES:
        if figures is not None and name not in figures:
            continue
        try:
            rows_a = common.read_rows(run_a, name)
            rows_b = common.read_rows(run_b, name)
        except common.MissingData:
            continue
        if not (common.has_column(rows_a, field) and common.has_column(rows_b, field)):
            continue
        for pt in points(rows_a, keys):
            match = dict(zip(keys, pt))
            if common.lookup(rows_b, **match) is None:
                continue
            ra = common.ratio(common.value(rows_a, field, mode=mode, **match),
                              common.value(rows_a, field, mode=base, **match))
            rb = common.ratio(common.value(rows_b, field, mode=mode, **match),
                              common.value(rows_b, field, mode=base, **match))
            out.append({"figure": name, "point": match, "a": ra, "b": rb, "apart": apart(ra, rb)})
    return out


def report(entries: list[dict], run_a: Path, run_b: Path, mode: str, base: str, field: str,
           tolerance: float) -> str:
    lines = [f"# {mode} / {base} ({field}): `{run_a.name}` against `{run_b.name}`", "",
             f"Within the tolerance: the larger ratio at most {1 + tolerance:.2f}x the smaller.",
             "", f"| figure | point | {run_a.name} | {run_b.name} | apart | within |",
             "|---|---|---|---|---|---|"]
    for e in entries:
        lines.append(f"| {e['figure']} | {common.point_text(e['point'])} | {e['a']:.2f}x "
                     f"| {e['b']:.2f}x | {e['apart']:.2f}x "
                     f"| {'yes' if within(e, tolerance) else '**no**'} |")
    agree = sum(within(e, tolerance) for e in entries)
    lines += ["", f"{agree} of {len(entries)} points within {tolerance * 100:.0f} %."]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_a", help="a run directory (with fig6.csv ... fig9.csv)")
    p.add_argument("run_b", help="another run directory")
    p.add_argument("--pair", default="dfuse/writethrough",
                   help="the ratio compared, MODE/BASE (default dfuse/writethrough)")
    p.add_argument("--tolerance", type=float, default=0.15,
                   help="how far apart two ratios may be, as a fraction (default 0.15)")
    p.add_argument("--figures", default=None, help="comma-separated figures (default: all)")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--latency", action="store_true",
                     help="compare mean latency instead of throughput")
    how.add_argument("--median-node", action="store_true",
                     help="compare the fio figures by their median node (median_node_mb_s)")
    p.add_argument("--out", default=None, help="also write the report here")
    args = p.parse_args()
    try:
        mode, base = args.pair.split("/")
    except ValueError:
        print(f"error: --pair {args.pair!r}: expected MODE/BASE", file=sys.stderr)
        return 2
    for m in (mode, base):
        if m not in common.MODES:
            print(f"error: --pair: unknown mode {m!r} (one of {', '.join(common.MODES)})",
                  file=sys.stderr)
            return 2
    if not 0 <= args.tolerance < 10:
        print(f"error: --tolerance {args.tolerance}: expected a fraction such as 0.15",
              file=sys.stderr)
        return 2
    run_a, run_b = Path(args.run_a), Path(args.run_b)
    for run in (run_a, run_b):
        if not run.is_dir():
            print(f"error: {run} is not a run directory", file=sys.stderr)
            return 2
    figures = tuple(args.figures.split(",")) if args.figures else None
    field = ("lat_mean_ms" if args.latency else
             "median_node_mb_s" if args.median_node else "throughput_mb_s")
    entries = compare(run_a, run_b, mode, base, field, figures)
    if not entries:
        print(f"error: {run_a} and {run_b} have no point in common", file=sys.stderr)
        return 2
    text = report(entries, run_a, run_b, mode, base, field, args.tolerance)
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text)
    return 0 if all(within(e, args.tolerance) for e in entries) else 1


if __name__ == "__main__":
    sys.exit(main())
