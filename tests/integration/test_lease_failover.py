"""Highly available lease managers: three dfuse-lease-manager instances and a
private etcd started by the cluster tool (``lease_managers=3``).  Killing the
active manager (kill -9) makes a standby active within a few seconds with a
higher epoch; clients reconnect to it and reclaim their leases."""

import os
import shutil
import signal
import time

import pytest

import dfuse_cluster as dc
from conftest import build_dir, require_binaries

# Default --etcd-lease-ttl: a dead leader's key lingers this long.
ETCD_TTL_S = 3
# Lease term (and reclaim window) for the failover test. A client reclaims
# only leases it still trusts when it reaches the new leader, so the term
# must outlast the etcd TTL plus the client's search: with the default 5 s
# term, a renewal just before the crash leaves ~3 s, about what the failover
# takes on a loaded 2-core machine. 8 s makes the reclaim deterministic.
TERM_S = 8


def require_ha():
    for tool in ("etcd", "etcdctl"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not installed (Debian etcd-server/etcd-client; tools/setup-deps.sh)")
    p = dc.binary_path(build_dir(), "lease-manager")
    if not (p.is_file() and os.access(p, os.X_OK)):
        pytest.skip(f"binary not built: {p}")


def wait_for(what, pred, timeout):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.1)


def test_kill_active_manager_standby_takes_over(make_cluster):
    require_ha()
    require_binaries("storage", "writethrough")
    c = make_cluster("writethrough", nodes=2, lease_managers=3,
                     lease_manager_args=["--term-ms", str(TERM_S * 1000)])
    assert len(c.lease_manager_addresses) == 3 and c.etcd["pid"]
    active = c.active_lease_manager()
    before = c.lease_stats(active)["lease"]
    # Standbys learn who leads at their next look at etcd.
    wait_for("standbys naming the leader", lambda: all(
        not s["active"] and s["leader"] == c.lease_manager_addresses[active]
        for s in (c.lease_stats(i)["lease"] for i in range(3) if i != active)), 5)
    leases_used = bool(c.lease_flag)
    if leases_used:
        assert "--lease-manager" in c.clients[0]["cmd"]
        wait_for("both clients' sessions", lambda: c.lease_stats(active)["lease"]["sessions"] == 2, 10)

    # Leases in use: a file written on one node, read on the other.
    (c.mount(0) / "f").write_bytes(b"epoch one")
    f1 = open(c.mount(1) / "f", "rb")  # node1 keeps it open: it holds a lease
    assert f1.read() == b"epoch one"

    t0 = time.monotonic()
    c.kill_lease_manager(active, signal.SIGKILL)
    new = c.wait_active_lease_manager(timeout=ETCD_TTL_S + 10, min_epoch=before["epoch"] + 1)
    failover = time.monotonic() - t0
    print(f"failover: manager {active} -> {new} in {failover:.2f}s")
    assert new != active
    assert failover < ETCD_TTL_S + 4
    after = c.lease_stats(new)["lease"]
    assert after["epoch"] > before["epoch"]
    assert c.etcdctl("get", "--print-value-only", "/dfuse/lease-manager/dfuse/leader").stdout.strip() \
        == c.lease_manager_addresses[new]

    if leases_used:
        # Both agents find the new leader (rotating past the dead one and the
        # other standby), and what they held comes back in the reclaim window.
        wait_for("clients reconnected", lambda: c.lease_stats(new)["lease"]["sessions"] == 2, TERM_S)
        stats = c.lease_stats(new)["lease"]
        print(f"new manager after reconnect: {stats}")
        assert stats["reclaims"] >= 1, stats
    # The file system keeps working under the new manager (after the window).
    (c.mount(1) / "f").write_bytes(b"epoch two")
    assert (c.mount(0) / "f").read_bytes() == b"epoch two"
    f1.close()

    # The killed manager comes back as a standby that names the new leader.
    c.restart_lease_manager(active)
    back = wait_for("restarted standby sees the leader",
                    lambda: (lambda s: s if s["leader"] else None)(c.lease_stats(active)["lease"]), 5)
    assert not back["active"] and back["leader"] == c.lease_manager_addresses[new]
    assert c.active_lease_manager() == new


def test_clean_stop_hands_over_at_once(make_cluster):
    require_ha()
    require_binaries("storage", "weakwriteback")
    # weakwriteback takes no leases: the managers run, the clients ignore them.
    c = make_cluster("weakwriteback", nodes=1, lease_managers=3)
    assert "--lease-manager" not in c.clients[0]["cmd"]
    active = c.active_lease_manager()
    epoch = c.lease_stats(active)["lease"]["epoch"]
    t0 = time.monotonic()
    c.stop_lease_manager(active)  # SIGTERM: stops serving, then revokes its etcd lease
    new = c.wait_active_lease_manager(timeout=10, min_epoch=epoch + 1)
    took = time.monotonic() - t0
    print(f"clean handover: {took:.2f}s")
    assert new != active and took < ETCD_TTL_S  # no waiting for the TTL
    assert "lost the leadership" not in dc.tail(c.lease_managers[active]["log"], 50)


def test_single_manager_is_the_default_for_writethrough(make_cluster):
    require_binaries("storage", "writethrough", "lease-manager")
    c = make_cluster("writethrough", nodes=1)
    assert c.lease_manager_count == 1 and not c.etcd
    assert "--state-dir" in c.lease_managers[0]["cmd"] and "--etcd" not in c.lease_managers[0]["cmd"]
    first = c.lease_stats(0)["lease"]
    assert first["active"] and first["epoch"] >= 1
    c.restart_lease_manager(0)
    assert c.lease_stats(0)["lease"]["epoch"] == first["epoch"] + 1  # kept in its state dir
    (c.mount(0) / "g").write_bytes(b"ok")
    assert (c.mount(0) / "g").read_bytes() == b"ok"
