"""What every figure script shares: reading a run's CSVs, the modes' colours
and names, the comparison with the paper, and writing PNG + PDF."""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Callable, Iterable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402,F401

MODES = ("dfuse", "writethrough", "weakwriteback")
LABELS = {"dfuse": "dfuse (kernel leases, write-back)",
          "writethrough": "writethrough (WT+OCC baseline)",
          "weakwriteback": "weakwriteback (no consistency)"}
COLORS = {"dfuse": "#1f6fb4", "writethrough": "#d9822b", "weakwriteback": "#8c8c8c"}
PAPER_STYLE = dict(color="black", marker="x", linestyle="--", linewidth=1)


class MissingData(Exception):
    """The run has no rows for this figure (it was not part of the run)."""


def _number(v: str):
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            return v


def read_rows(run: Path, name: str) -> list[dict]:
    path = Path(run) / f"{name}.csv"
    if not path.exists():
        raise MissingData(f"{path} does not exist")
    with open(path, newline="") as f:
        rows = [{k: _number(v) for k, v in r.items()} for r in csv.DictReader(f)]
    if not rows:
        raise MissingData(f"{path} has no rows")
    return rows


def modes_in(rows: Iterable[dict]) -> list[str]:
    present = {r["mode"] for r in rows}
    return [m for m in MODES if m in present]


def lookup(rows: list[dict], **match) -> dict | None:
    for r in rows:
        if all(r.get(k) == v for k, v in match.items()):
            return r
    return None


def point_text(match: dict) -> str:
    """A point named by its columns, e.g. "random 50:50 100% contention 4 nodes"."""
    parts = []
    for k, v in match.items():
        if k == "read_pct":
            parts.append(f"{v}:{100 - int(v)}")
        elif k == "contention_pct":
            parts.append(f"{v}% contention")
        elif k == "nodes":
            parts.append(f"{v} nodes")
        else:
            parts.append(str(v))
    return " ".join(parts)


def has_column(rows: list[dict], field: str) -> bool:
    """Whether every row has a value for ``field``: a run from before a column was added
    has none (or, rewritten, empty values)."""
    return bool(rows) and all(r.get(field) not in (None, "") for r in rows)


def value(rows: list[dict], field: str, **match) -> float:
    r = lookup(rows, **match)
    return float(r[field]) if r else float("nan")


def spread(rows: list[dict], field: str, **match) -> tuple[float, float]:
    """How far below and above the median the lowest and highest repetition of a point
    were (0, 0 for one repetition or a run from before repetitions)."""
    r = lookup(rows, **match)
    if not r or r.get(f"{field}_min") in (None, "") or r.get(f"{field}_max") in (None, ""):
        return (0.0, 0.0)
    v = float(r[field])
    return (v - float(r[f"{field}_min"]), float(r[f"{field}_max"]) - v)


Series = dict[str, list[float]]
Errors = dict[str, list[tuple[float, float]]]


def series(rows: list[dict], field: str, modes: list[str],
           points: list[dict]) -> tuple[Series, Errors]:
    """Each mode's median of ``field`` at each point (a dict of columns to match), and
    the spread of its repetitions there."""
    return ({m: [value(rows, field, mode=m, **pt) for pt in points] for m in modes},
            {m: [spread(rows, field, mode=m, **pt) for pt in points] for m in modes})


def yerr(errors: list[tuple[float, float]]) -> list[list[float]] | None:
    """matplotlib's yerr (lows, highs) for one mode's spreads; None when there is none."""
    if not any(lo or hi for lo, hi in errors):
        return None
    return [[lo for lo, _ in errors], [hi for _, hi in errors]]


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def relative_to_writethrough(measured: dict[str, list[float]]) -> dict[str, list[float]]:
    """Every other mode's series divided point by point by writethrough's."""
    base = measured.get("writethrough")
    if base is None:
        return {}
    return {m: [ratio(a, b) for a, b in zip(ys, base)]
            for m, ys in measured.items() if m != "writethrough"}


def paper_ratio(ref: dict[str, list[float]]) -> list[float]:
    """The paper's DFUSE / WT+OCC, point by point."""
    return [d / w for d, w in zip(ref["dfuse"], ref["writethrough"])]


def save(fig, out: Path, name: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=130, bbox_inches="tight")
    # No creation date: redrawing unchanged results leaves the files unchanged.
    fig.savefig(paths[1], bbox_inches="tight", metadata={"CreationDate": None})
    plt.close(fig)
    return paths


def bars(ax, xs: list, measured: Series, ylabel: str, errors: Errors | None = None) -> None:
    """Grouped bars, one colour per mode; error bars from the lowest to the highest
    repetition where there were several."""
    n = len(measured)
    width = 0.8 / max(n, 1)
    for k, (mode, ys) in enumerate(measured.items()):
        pos = [i + (k - (n - 1) / 2) * width for i in range(len(xs))]
        ax.bar(pos, ys, width, color=COLORS[mode], label=mode,
               yerr=yerr((errors or {}).get(mode, [])), capsize=2, error_kw={"elinewidth": 0.8})
    ax.set_xticks(range(len(xs)))
    ax.set_xticklabels([str(x) for x in xs])
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)


def ratio_panel(ax, xs: list, measured: dict[str, list[float]], paper: list[float] | None,
                ylabel: str) -> None:
    """Each mode relative to writethrough, with the paper's DFUSE / WT+OCC."""
    for mode, ys in measured.items():
        ax.plot(range(len(xs)), ys, marker="o", color=COLORS[mode], label=f"{mode} / writethrough")
    if paper:
        ax.plot(range(len(xs)), paper, label="paper: DFUSE / WT+OCC", **PAPER_STYLE)
    ax.set_xticks(range(len(xs)))
    ax.set_xticklabels([str(x) for x in xs])
    ratio_axis(ax, ylabel)


def ratio_axis(ax, ylabel: str) -> None:
    """Log scale, so 2x faster and 2x slower are equally far from 1."""
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both")


def main(draw: Callable[[Path, Path], list[Path]], doc: str) -> int:
    p = argparse.ArgumentParser(description=doc)
    p.add_argument("run", help="a run directory under results/ (with the figure's CSV)")
    p.add_argument("--out", default=None, help="where to write PNG and PDF (default: RUN/figures)")
    args = p.parse_args()
    run = Path(args.run)
    try:
        for path in draw(run, Path(args.out) if args.out else run / "figures"):
            print(path)
    except MissingData as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
