#!/usr/bin/env python3
"""The ratios of a results run next to the paper's, as Markdown (RUN/summary.md).

Ratios compare modes measured side by side in the one run: dfuse / writethrough
against the paper's DFUSE / WT+OCC, dfuse / weakwriteback against the weak upper
bound the paper does not measure, and writethrough / weakwriteback, how strong the
baseline is (also in a run without dfuse, such as one on stock FUSE). A figure
the run lacks is left out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import paper  # noqa: E402


def pct(r: float) -> str:
    if r != r:  # NaN: a mode is missing
        return "n/a"
    return f"{r:.2f}x ({(r - 1) * 100:+.1f}%)"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(r) + " |" for r in rows] + [""])


# The measured ratios of every table, in its column order after the paper's.
PAIRS = (("dfuse", "writethrough"), ("dfuse", "weakwriteback"),
         ("writethrough", "weakwriteback"))


def ratio_text(rows: list[dict], field: str, mode: str, base: str, **match) -> str:
    """mode / base of the medians, with the widest ratio the repetitions allow (lowest
    of one over highest of the other and the reverse) where there were several."""
    a = common.value(rows, field, mode=mode, **match)
    a_lo, a_hi = common.spread(rows, field, mode=mode, **match)
    b = common.value(rows, field, mode=base, **match)
    b_lo, b_hi = common.spread(rows, field, mode=base, **match)
    text = pct(common.ratio(a, b))
    if a == a and b == b and (a_lo or a_hi or b_lo or b_hi):
        text += (f" [{common.ratio(a - a_lo, b + b_hi):.2f}-"
                 f"{common.ratio(a + a_hi, b - b_lo):.2f}]")
    return text


def ratios(rows: list[dict], field: str, **match) -> list[str]:
    """The PAIRS' ratios at one point."""
    return [ratio_text(rows, field, mode, base, **match) for mode, base in PAIRS]


def row(first: list[str], measured: list[str], paper_ratio: str) -> list[str]:
    """A table row: its labels, dfuse / writethrough, the paper's, then the rest."""
    return first + measured[:1] + [paper_ratio] + measured[1:]


HEADER = ["dfuse / writethrough", "paper DFUSE / WT+OCC", "dfuse / weakwriteback",
          "writethrough / weakwriteback"]


def fig6(run: Path) -> list[str]:
    rows = common.read_rows(run, "fig6")
    out = ["## Headline (Fig. 6a and 6c: random, 0:100)", ""]
    out += table(["metric"] + HEADER, [
        row(["throughput"], ratios(rows, "throughput_mib_s", pattern="random", read_pct=0),
            pct(1 + paper.HEADLINE_THROUGHPUT)),
        row(["mean latency"], ratios(rows, "lat_mean_ms", pattern="random", read_pct=0),
            pct(1 + paper.HEADLINE_LATENCY))])
    out += ["## Fig. 6: fio, no contention", ""]
    body = []
    for pattern in ("random", "sequential"):
        for metric, field in (("throughput", "throughput_mib_s"), ("latency", "lat_mean_ms")):
            ref = paper.FIG6[(pattern, metric)]
            for i, r in enumerate(paper.READ_PCT):
                body.append(row([pattern, metric, f"{r}:{100 - r}"],
                                ratios(rows, field, pattern=pattern, read_pct=r),
                                pct(ref["dfuse"][i] / ref["writethrough"][i])))
    return out + table(["pattern", "metric", "R:W"] + HEADER, body)


# The contended points' second ratio: the sum had every node done what the median
# node did, which one node that never waits cannot move (runs from before it lack it).
MEDIAN_NODE = "median_node_mb_s"
MEDIAN_NODE_HEADER = "dfuse / writethrough, by the median node"
MEDIAN_NODE_NOTE = ("The last column compares the modes by what their median node did "
                    "(`median_node_mb_s`: its MB/s times the number of nodes). At a "
                    "contended point one node sometimes settles into holding most files "
                    "and never waiting while the others wait as much as they would "
                    "without it; the sum then follows that node, this column does not.")


def contended(rows: list[dict], header: list[str], labels: list[list[str]],
              matches: list[dict], paper_ratios: list[str]) -> list[str]:
    """A table of contended fio points, with the median-node ratio if the run has it."""
    by_median = common.has_column(rows, MEDIAN_NODE)
    body = []
    for first, match, ref in zip(labels, matches, paper_ratios):
        cells = row(first, ratios(rows, "throughput_mb_s", **match), ref)
        if by_median:
            cells.append(ratio_text(rows, MEDIAN_NODE, "dfuse", "writethrough", **match))
        body.append(cells)
    columns = header + HEADER + ([MEDIAN_NODE_HEADER] if by_median else [])
    return table(columns, body) + ([MEDIAN_NODE_NOTE, ""] if by_median else [])


def fig7(run: Path) -> list[str]:
    rows = common.read_rows(run, "fig7")
    cs = paper.CONTENTION_PCT
    return ["## Fig. 7: contention (throughput)", ""] + contended(
        rows, ["contention"], [[f"{c}%"] for c in cs], [{"contention_pct": c} for c in cs],
        [pct(paper.FIG7["dfuse"][i] / paper.FIG7["writethrough"][i]) for i in range(len(cs))])


def fig8(run: Path) -> list[str]:
    rows = common.read_rows(run, "fig8")
    ns = sorted({r["nodes"] for r in rows})
    refs = [pct(paper.FIG8["dfuse"][paper.NODES.index(n)] /
                paper.FIG8["writethrough"][paper.NODES.index(n)]) if n in paper.NODES else "—"
            for n in ns]
    return ["## Fig. 8: nodes at 50 % contention (throughput)", ""] + contended(
        rows, ["nodes"], [[str(n)] for n in ns], [{"nodes": n} for n in ns], refs)


def fig9(run: Path) -> list[str]:
    rows = common.read_rows(run, "fig9")
    body = []
    for p in ("fileserver", "webserver", "netsfs"):
        for c in (0, 100):
            for k, (metric, field) in enumerate((("throughput", "throughput_mb_s"),
                                                 ("latency", "lat_mean_ms"))):
                ref = paper.FIG9[(p, c)]
                body.append(row([p, f"{c}%", metric],
                                ratios(rows, field, personality=p, contention_pct=c),
                                pct(ref["dfuse"][k] / ref["writethrough"][k])))
    return (["## Fig. 9: personalities", ""]
            + table(["personality", "contention", "metric"] + HEADER, body))


def consistency(run: Path) -> list[str]:
    rows = common.read_rows(run, "consistency")
    body = []
    for m in common.modes_in(rows):
        mine = [r for r in rows if r["mode"] == m]
        torn = sum(r.get("torn_reads", 0) for r in mine)
        # Runs before the column have no local count to show.
        local = (str(sum(r["local_torn_reads"] for r in mine))
                 if all("local_torn_reads" in r for r in mine) else "-")
        body.append([m, str(sum(r["operations"] for r in mine)),
                     f"{sum(r['non_linearizable'] for r in mine)} of "
                     f"{sum(r['registers'] for r in mine)}", f"{torn} ({local})"])
    return (["## Consistency (dfuse-checker)", "",
             "A torn read is local when a write from the reader's own node overlapped it: "
             "Linux does not make a buffered read of a page atomic against a write of it "
             "on one machine (ext4 tears the same way), so only a tear that is not local "
             "is the file system's.", ""]
            + table(["mode", "operations", "non-linearizable registers",
                     "torn reads (local)"], body))


# A fio point whose busiest node did this many times the median node's operations
# was carried by that node: its sum says little about the others.
UNEVEN = 10.0


def node_balance(run: Path) -> list[str]:
    """fio points one node carried (node_spread at least UNEVEN), so that a reader of
    the ratios above knows which sums one node made."""
    body = []
    for fig in ("fig6", "fig7", "fig8"):
        try:
            rows = common.read_rows(run, fig)
        except common.MissingData:
            continue
        for r in rows:
            spread = r.get("node_spread")
            if isinstance(spread, (int, float)) and spread >= UNEVEN:
                point = common.point_text({k: r[k] for k in ("pattern", "read_pct",
                                                             "contention_pct", "nodes")})
                body.append([fig, point, r["mode"], f"{spread:.0f}x"])
    if not body:
        return []
    return (["## Points one node carried", "",
             f"At these fio points the busiest node did at least {UNEVEN:.0f} times the "
             "operations of the median node (`node_spread`; with repetitions, the worst "
             "one): their throughput is that node's, the others waited.", ""]
            + table(["figure", "point", "mode", "busiest / median node"], body))


SECTIONS = (fig6, fig7, fig8, node_balance, fig9, consistency)


def incomplete(run: Path) -> list[str]:
    """A run that stopped says so first, with the runner's reason: its missing points
    (n/a below) were never measured, not measured as nothing."""
    try:
        manifest = json.loads((run / "manifest.json").read_text())
    except (OSError, ValueError):
        return []
    # "complete with N failed runs (failures.csv)" (--keep-going) went on to the end.
    if str(manifest.get("status", "complete")).startswith("complete"):
        return []
    reason = " ".join(str(manifest.get("error") or "no reason recorded").split())
    return [f"**This run did not complete** ({manifest['status']}): {reason}. "
            "Points from there on were not measured.", ""]


def summarize(run: Path) -> str:
    lines = [f"# Results `{run.name}`: ratios next to the paper's", "",
             "Ratios of modes measured side by side in this run; one machine's absolute "
             "numbers are noise. Where points were measured several times, ratios are of "
             "the medians, with [lowest-highest] the ratio the repetitions span.", ""]
    lines += incomplete(run)
    for section in SECTIONS:
        try:
            lines += section(run)
        except common.MissingData:
            continue
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("run", help="a results run directory")
    p.add_argument("--stdout", action="store_true", help="print instead of writing RUN/summary.md")
    args = p.parse_args()
    text = summarize(Path(args.run))
    if args.stdout:
        print(text)
    else:
        (Path(args.run) / "summary.md").write_text(text)
        print(Path(args.run) / "summary.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
