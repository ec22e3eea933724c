"""A point measured several times: its median and spread.

The runner measures every point `repeats` times, the modes taking turns in
a different order each time, and writes one row per point and mode: the
median of each measured quantity, with the lowest and highest repetition
beside the headline ones (SPREAD_FIELDS) so that figures draw error bars
and summaries say how far the repetitions were apart.
"""

from __future__ import annotations

import statistics

# Measured quantities: the median goes into the row.
MEASURED = ("throughput_mib_s", "throughput_mb_s", "lat_mean_ms", "ops", "median_node_mb_s",
            "fsync_s", "races")
# Quantities whose worst repetition goes into the row: one repetition in which a node
# did far more than the others is worth seeing.
WORST = ("node_spread",)
# The headline quantities also get <field>_min and <field>_max.
SPREAD_FIELDS = ("throughput_mib_s", "throughput_mb_s", "lat_mean_ms")


def spread_columns(fields: list[str]) -> list[str]:
    """The columns a CSV with ``fields`` gains: repeats and the spread of each headline
    quantity it has."""
    extra = ["repeats"]
    for f in SPREAD_FIELDS:
        if f in fields:
            extra += [f"{f}_min", f"{f}_max"]
    return extra


def combine(rows: list[dict]) -> dict:
    """One row from a point's repetitions (rows of one mode): the median of each measured
    quantity, the rest taken from the first."""
    if not rows:
        raise ValueError("no repetition to combine")
    out = dict(rows[0])
    for f in MEASURED:
        if f not in out:
            continue
        values = [r[f] for r in rows]
        median = statistics.median(values)
        out[f] = round(median, 4) if isinstance(median, float) else median
        if f in SPREAD_FIELDS:
            out[f"{f}_min"], out[f"{f}_max"] = min(values), max(values)
    for f in WORST:
        if f in out:
            out[f] = max(r[f] for r in rows)
    out["repeats"] = len(rows)
    return out

