"""tools/matrix.py: how long each point of a profile is measured."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))
import matrix  # noqa: E402


def test_contended_fio_points_run_the_longer_runtime():
    m = matrix.load("quick", ["fig7"])
    prof = m.profile
    assert prof["contended_runtime"] > prof["runtime"]
    runtimes = {p.contention_pct: matrix.fio_runtime(p, prof) for p in m.points()}
    assert runtimes == {0: prof["runtime"], 25: prof["contended_runtime"],
                        50: prof["contended_runtime"], 75: prof["contended_runtime"],
                        100: prof["contended_runtime"]}
    contended = next(p for p in m.points() if p.contention_pct == 100)
    assert matrix.point_seconds(contended, prof) == prof["contended_runtime"] + prof["ramp"]


def test_a_profile_without_it_measures_every_point_alike():
    m = matrix.load("smoke", ["fig7"])
    assert "contended_runtime" not in m.profile
    assert {matrix.fio_runtime(p, m.profile) for p in m.points()} == {m.profile["runtime"]}


@pytest.mark.parametrize("value", ["0", "-1", '"long"', "true"])
def test_a_bad_contended_runtime_is_refused(tmp_path, value):
    text = (REPO / "workloads" / "matrix.toml").read_text()
    smoke = text.index("[profiles.smoke]\n") + len("[profiles.smoke]\n")
    path = tmp_path / "matrix.toml"
    path.write_text(text[:smoke] + f"contended_runtime = {value}\n" + text[smoke:])
    with pytest.raises(ValueError, match="contended_runtime must be"):
        matrix.load("smoke", ["fig7"], path)
