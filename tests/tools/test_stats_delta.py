"""tools/dfuse-reproduce's stats_delta: what the daemons counted during a point."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
from runner_module import load_runner  # noqa: E402

runner = load_runner()


def snapshot(grants: int, reads: int, acquire_lt_1024us: int) -> dict:
    return {"counters": {"lease.grants": grants, "kernel_leases.upcalls": grants,
                         "fuse.read": reads},
            "latencies": {"lease.acquire": {"histogram": {"lt_1024us": acquire_lt_1024us}},
                          "fuse.read": {"histogram": {"lt_16us": reads}}}}


def test_sums_over_nodes_and_keeps_each_nodes_lease_counters():
    before = [snapshot(10, 100, 5), snapshot(20, 0, 1)]
    after = [snapshot(1010, 150, 6), snapshot(23, 7, 4)]
    d = runner.stats_delta(before, after)
    assert d["counters"] == {"lease.grants": 1003, "kernel_leases.upcalls": 1003,
                             "fuse.read": 57}
    # Only the lease metrics' histograms, summed.
    assert d["latency_histograms"] == {"lease.acquire": {"lt_1024us": 4}}
    # Which node got the grants: the sum cannot say, the nodes' own counters can.
    assert d["node_counters"] == [{"lease.grants": 1000, "kernel_leases.upcalls": 1000},
                                  {"lease.grants": 3, "kernel_leases.upcalls": 3}]


def test_a_node_whose_stats_could_not_be_read_counts_nothing():
    d = runner.stats_delta([snapshot(1, 1, 1), {}], [snapshot(2, 1, 1), {}])
    assert d["counters"]["lease.grants"] == 1
    assert d["node_counters"] == [{"lease.grants": 1, "kernel_leases.upcalls": 1}, {}]


def test_the_lease_managers_counters_are_its_own_and_dropped_across_a_failover():
    before = {"epoch": 3, "grants": 10, "since_known": 2, "sessions": 4}
    after = {"epoch": 3, "grants": 15, "since_known": 2, "sessions": 4, "since_unknown": 1}
    assert runner.manager_delta(before, after) == {
        "manager.grants": 5, "manager.since_known": 0, "manager.since_unknown": 1}
    assert runner.manager_delta(before, {**after, "epoch": 4}) == {}
    assert runner.manager_delta({}, after) == {}
