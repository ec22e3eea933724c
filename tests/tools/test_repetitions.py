"""tools/repetitions.py: a point measured several times becomes its median and spread."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import repetitions  # noqa: E402


def row(mb_s: float, lat_ms: float, ops: int) -> dict:
    return {"mode": "dfuse", "pattern": "random", "nodes": 4, "throughput_mb_s": mb_s,
            "throughput_mib_s": mb_s / 1.048576, "lat_mean_ms": lat_ms, "ops": ops,
            "fsync_s": 0.5}


def test_the_median_and_the_extremes_of_each_headline_quantity():
    r = repetitions.combine([row(10.0, 4.0, 100), row(30.0, 1.0, 300), row(12.0, 3.0, 120)])
    assert r["repeats"] == 3
    assert (r["throughput_mb_s"], r["throughput_mb_s_min"], r["throughput_mb_s_max"]) == \
        (12.0, 10.0, 30.0)
    assert (r["lat_mean_ms"], r["lat_mean_ms_min"], r["lat_mean_ms_max"]) == (3.0, 1.0, 4.0)
    assert r["ops"] == 120 and r["fsync_s"] == 0.5
    assert r["mode"] == "dfuse" and r["nodes"] == 4  # what the point is, unchanged


def test_the_most_uneven_repetition_is_kept():
    rows = [dict(row(10.0, 4.0, 100), node_spread=s) for s in (1.1, 263.7, 1.3)]
    assert repetitions.combine(rows)["node_spread"] == 263.7


def test_one_repetition_has_no_spread_and_none_is_an_error():
    r = repetitions.combine([row(10.0, 4.0, 100)])
    assert r["repeats"] == 1 and r["throughput_mb_s_min"] == r["throughput_mb_s_max"] == 10.0
    with pytest.raises(ValueError):
        repetitions.combine([])


def test_columns_follow_the_quantities_a_figure_has():
    assert repetitions.spread_columns(["mode", "throughput_mb_s", "lat_mean_ms", "races"]) == [
        "repeats", "throughput_mb_s_min", "throughput_mb_s_max", "lat_mean_ms_min",
        "lat_mean_ms_max"]
