"""tools/ansible_cluster.py's clock_offset: bounds on a host's clock, measured over a pipe.

The "host" here is a local process (the command ssh would run, without ssh), so its
clock is this machine's: the true offset is 0 and must lie within the bounds.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import ansible_cluster  # noqa: E402
from dfuse_cluster import ClusterError  # noqa: E402


def inventory(tmp_path: Path, remote_shell: list[str]) -> ansible_cluster.Inventory:
    path = tmp_path / "inventory.yml"
    path.write_text("all: {}\n")
    inv = ansible_cluster.Inventory.__new__(ansible_cluster.Inventory)
    inv.path = path
    # What ssh would run on the host, run here instead.
    inv.ssh_command = lambda host, cmd: remote_shell + list(cmd)
    return inv


def test_the_bounds_hold_the_true_offset_and_are_one_round_trip_wide(tmp_path):
    inv = inventory(tmp_path, [])
    lo, hi = inv.clock_offset("h1", samples=30)
    assert lo <= 0 <= hi
    assert hi - lo < 100_000_000  # a pipe's round trip, not a guess


def test_a_host_whose_clock_is_ahead_is_bounded_around_its_offset(tmp_path):
    # A "host" whose clock runs 5 s ahead of this machine's.
    ahead = ("import sys,time\nfor _ in sys.stdin: print(time.time_ns() + 5_000_000_000, "
             "flush=True)")
    inv = inventory(tmp_path, [])
    inv.ssh_command = lambda host, cmd: ["python3", "-u", "-c", ahead]
    lo, hi = inv.clock_offset("h1", samples=10)
    assert lo <= 5_000_000_000 <= hi


@pytest.mark.parametrize("shell", [["false", "--"], ["sh", "-c", "echo nope; exit 3", "--"]])
def test_a_host_that_gives_no_reading_is_a_cluster_error(tmp_path, shell):
    inv = inventory(tmp_path, shell)
    with pytest.raises(ClusterError, match="h1: no clock reading"):
        inv.clock_offset("h1", samples=5)
