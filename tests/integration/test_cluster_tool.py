"""The local cluster tool itself: start, record, fail cleanly, tear down, CLI."""

import json
import os
import signal
import subprocess
import sys

import pytest

import dfuse_cluster as dc
from conftest import REPO, require_binaries, require_fuse

CLI = REPO / "tools" / "dfuse-cluster"


def nothing_left(rundir) -> None:
    root = str(rundir)
    mounts = [mp for mp, _ in dc.list_mounts() if mp.startswith(root + "/")]
    assert not mounts, f"left mounted: {mounts}"
    state = json.loads((rundir / "cluster.json").read_text())
    pids = [state["storage"].get("pid")] + [c.get("pid") for c in state["clients"]]
    assert not any(dc.pid_alive(p) for p in pids if p), f"left running: {pids}"
    tag = state["net"]["tag"]
    assert not [n for n in dc.list_netns() if n.startswith(tag + "-")], "network namespaces left"


def test_up_records_state_and_down_cleans(workdir):
    require_fuse()
    require_binaries("storage", "writethrough")
    c = dc.Cluster(workdir / "run", mode="writethrough", nodes=2, rtt_us=200, net="auto")
    with c:
        state = json.loads(c.state_file.read_text())
        assert state["status"] == "up"
        assert state["net"]["used"] in ("netns", "inprocess")
        assert len(state["clients"]) == 2
        for i in range(2):
            assert dc.mount_fstype(c.mount(i)) == "fuse.dfuse-writethrough"
            assert dc.pid_alive(c.pid(i))
        if state["net"]["used"] == "inprocess":
            assert "--emulated-rtt-us" in state["clients"][0]["cmd"]
        (c.mount(0) / "hello").write_bytes(b"hi")
        assert (c.mount(1) / "hello").read_bytes() == b"hi"
        # Stats dumps on SIGUSR1, parsed.
        assert isinstance(c.stats(0), dict) and c.stats(0)
        assert isinstance(c.stats(), dict) and c.stats()
        # kill -9 leaves a dead mount; restart_client recovers it.
        c.kill_client(1, sig=signal.SIGKILL)
        with pytest.raises(OSError):
            os.listdir(c.mount(1))
        c.restart_client(1)
        assert (c.mount(1) / "hello").read_bytes() == b"hi"
    nothing_left(c.rundir)
    c.down()  # idempotent
    nothing_left(c.rundir)


def test_netns_mode_without_delay(workdir):
    require_fuse()
    require_binaries("storage", "weakwriteback")
    ok, why = dc.netns_supported()
    if not ok:
        pytest.skip(f"no network namespaces: {why}")
    with dc.Cluster(workdir / "run", mode="weakwriteback", nodes=2, net="netns") as c:
        assert c.storage["address"].startswith(dc.STORAGE_NS_ADDR + ":")
        assert all(cl["netns"] in dc.list_netns() for cl in c.clients)
        (c.mount(0) / "f").write_bytes(b"over veth")
        assert (c.export_dir / "f").read_bytes() == b"over veth"
    nothing_left(c.rundir)


def test_failed_start_tears_down_and_shows_log(workdir):
    require_fuse()
    require_binaries("storage", "writethrough")
    c = dc.Cluster(workdir / "run", mode="writethrough", nodes=2, net="none",
                   client_args=["--definitely-not-a-flag"], ready_timeout=20)
    with pytest.raises(dc.ClusterError) as ei:
        c.up()
    msg = str(ei.value)
    assert "node0" in msg and "definitely-not-a-flag" in msg, msg
    nothing_left(c.rundir)


def test_missing_binaries_are_reported(workdir):
    c = dc.Cluster(workdir / "run", mode="writethrough", build_dir=workdir / "nobuild")
    with pytest.raises(dc.ClusterError, match="missing binaries"):
        c.up()


def test_cli_up_status_down(workdir):
    require_fuse()
    require_binaries("storage", "weakwriteback")
    run = workdir / "cli"
    env = dict(os.environ)

    def cli(*args, check=True):
        r = subprocess.run([sys.executable, str(CLI), *args], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=120, env=env)
        if check:
            assert r.returncode == 0, r.stderr
        return r

    assert "usage" in cli("--help").stdout
    try:
        cli("up", "--dir", str(run), "--mode", "weakwriteback", "--nodes", "2", "--net", "none",
            "--", "--attr-timeout", "2")
        state = json.loads((run / "cluster.json").read_text())
        assert "--attr-timeout" in state["clients"][0]["cmd"]
        assert cli("status", "--dir", str(run)).returncode == 0
        assert json.loads(cli("status", "--dir", str(run), "--json").stdout)["clients"][1]["alive"]
    finally:
        cli("down", "--dir", str(run))
    assert cli("status", "--dir", str(run), check=False).returncode == 1
    cli("down", "--dir", str(run))  # idempotent
    nothing_left(run)


def test_lease_manager_defaults_and_flags(workdir):
    assert dc.Cluster(workdir / "a", mode="writethrough").lease_manager_count == 1
    assert dc.Cluster(workdir / "b", mode="weakwriteback").lease_manager_count == 0
    assert dc.Cluster(workdir / "c", mode="weakwriteback", lease_managers=3).lease_manager_count == 3
    assert dc.LEASE_MODES >= {"writethrough", "dfuse"}
    with pytest.raises(dc.ClusterError):
        dc.Cluster(workdir / "d", lease_managers=-1)
    r = subprocess.run([sys.executable, str(CLI), "up", "--help"], stdout=subprocess.PIPE, text=True)
    assert "--lease-managers" in r.stdout


def test_down_all_sweeps_only_tool_started_services(workdir):
    # Identified by a path argument inside a run directory (one with cluster.json).
    run = workdir / "run"
    run.mkdir()
    (run / "cluster.json").write_text("{}")
    assert dc.tool_started(["dfuse-lease-manager", "--stats", f"{run}/leasemgr0/stats.json"])
    assert dc.tool_started(["etcd", "--name", "dfuse-etcd", f"--data-dir={run}/etcd/data"])
    assert not dc.tool_started(["etcd", "--data-dir", "/var/lib/etcd/default"])
    assert not dc.tool_started(["dfuse-lease-manager", "--listen", "127.0.0.1:0", "--epoch", "1"])


def test_lease_managers_recorded_and_stopped(workdir):
    require_fuse()
    require_binaries("storage", "weakwriteback", "lease-manager")
    c = dc.Cluster(workdir / "run", mode="weakwriteback", nodes=1, net="none", lease_managers=1)
    with c:
        state = json.loads(c.state_file.read_text())
        assert state["lease_manager_count"] == 1 and state["lease_managers"][0]["address"]
        assert c.lease_manager_addresses == [state["lease_managers"][0]["address"]]
        assert c.active_lease_manager() == 0 and c.lease_stats(0)["lease"]["active"]
        # weakwriteback takes no leases: its clients are not told about the manager.
        assert "--lease-manager" not in state["clients"][0]["cmd"]
        pid = c.lease_managers[0]["pid"]
    assert not dc.pid_alive(pid)
    nothing_left(c.rundir)
