"""The Ansible cluster path (ansible/) on network-namespace hosts.

Four hosts made by tools/netns_hosts.py (storage with the lease manager and
its etcd member, three clients), each its own network and mount namespace
with its own sshd; Ansible reaches them over ssh as on real machines.

* check.yml passes on a good inventory and stops, before any daemon starts,
  with a clear message on a missing group, an unreachable host, a kernel
  that cannot take dfuse.ko and a port in use;
* deploy.yml installs; a second deploy and a --check --diff deploy report
  no change;
* up.yml brings a writethrough cluster up (a second up changes nothing); a
  file written on one client is read on the other;
* every daemon runs with mutual TLS (certificates from the tls role);
* down.yml and teardown.yml leave no daemon, mount or file behind;
* `make reproduce INVENTORY=...` runs a smoke profile of Figs. 8 and 9 and
  the consistency checker for writethrough and weakwriteback on the hosts:
  its CSVs have a local run's columns, the figures are drawn, the manifest
  names the hosts, their kernels and the round trip, the checker's histories
  from two hosts merge within a measured clock bound that holds the true
  offset (0: the namespaces share one clock) and writethrough's is
  linearizable, and nothing is left on the hosts;
* ansible-lint is clean and systemd-analyze verify accepts the units.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import REPO, build_dir

import netns_hosts  # noqa: E402  (tools/ is on sys.path via conftest)

ANSIBLE_DIR = REPO / "ansible"
GROUPS = {"storage": ["st01"], "lease_managers": ["st01"], "etcd": ["st01"],
          "clients": ["c01", "c02", "c03"]}


def _require(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (make setup installs it)")


def playbook(hosts: netns_hosts.NetnsHosts, name: str, *args: str, check: bool = True,
             inventory: Path | None = None) -> subprocess.CompletedProcess:
    cmd = ["ansible-playbook", "-i", str(inventory or hosts.inventory), name, *args]
    r = hosts.run_control(["env", "-C", str(ANSIBLE_DIR), *cmd], check=False, timeout=900,
                          env={"ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
                               "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"})
    if check:
        assert r.returncode == 0, f"{name} failed:\n{r.stdout[-4000:]}\n{r.stderr[-2000:]}"
    return r


def recap(out: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP counts per host."""
    hosts = {}
    for m in re.finditer(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+"
                         r"failed=(\d+)", out, re.M):
        hosts[m.group(1)] = {"ok": int(m.group(2)), "changed": int(m.group(3)),
                             "unreachable": int(m.group(4)), "failed": int(m.group(5))}
    assert hosts, f"no PLAY RECAP in:\n{out[-3000:]}"
    return hosts


def leftovers(hosts: netns_hosts.NetnsHosts) -> list[str]:
    found = []
    for h in hosts.names:
        found += [f"{h}: process {p}" for p in hosts.processes(h)]
        found += [f"{h}: mount {m}" for m in hosts.mounts(h)]
        d = hosts.host_dir(h)
        if d.exists():
            found += [f"{h}: file {p}" for p in d.rglob("*")]
    return found


@pytest.fixture(scope="module")
def hosts():
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    for tool in ("ansible-playbook", "ssh", netns_hosts.SSHD):
        _require(tool)
    build = build_dir()
    root = Path(tempfile.mkdtemp(prefix="dfuse-ansible-")) / "hosts"
    with netns_hosts.NetnsHosts(root, GROUPS, host_vars={"dfuse_build_dir": str(build)},
                                progress=print) as h:
        yield h
    shutil.rmtree(root.parent, ignore_errors=True)


def test_ansible_lint_is_clean():
    _require("ansible-lint")
    r = subprocess.run(["ansible-lint", "--nocolor", "--offline"], cwd=ANSIBLE_DIR,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]


def test_systemd_units_verify(tmp_path):
    _require("systemd-analyze")
    build = build_dir()
    units = tmp_path / "etc/systemd/system"
    units.mkdir(parents=True)
    for f in (REPO / "systemd").glob("*.service"):
        shutil.copy(f, units / f.name)
    # What the units start, where the roles install it (copies: --root
    # resolves symbolic links inside the root); and the targets the units
    # are ordered against, from the host's systemd.
    def install(src: Path, dst: Path) -> None:
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy(src, dst)

    for rel in ("storage/dfuse-storage", "lease/dfuse-lease-manager", "impl/dfuse/dfuse-dfuse",
                "impl/writethrough/dfuse-writethrough",
                "impl/weakwriteback/dfuse-weakwriteback"):
        install(build / rel, tmp_path / "opt/dfuse/bin" / Path(rel).name)
    install(Path(shutil.which("etcd") or "/usr/bin/etcd"), tmp_path / "usr/bin/etcd")
    lib = tmp_path / "lib/systemd/system"
    lib.mkdir(parents=True)
    for t in Path("/lib/systemd/system").glob("*.target"):
        shutil.copy(t, lib / t.name, follow_symlinks=False)
    names = ["dfuse-storage@writethrough.service", "dfuse-lease-manager@dfuse.service",
             "dfuse-etcd.service"] + [f"dfuse-client@{m}.service"
                                      for m in ("dfuse", "writethrough", "weakwriteback")]
    r = subprocess.run(["systemd-analyze", "verify", f"--root={tmp_path}", *names],
                       cwd=units, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and not r.stderr.strip(), r.stdout + r.stderr


def test_check_stops_bad_clusters_before_anything_starts(hosts, tmp_path):
    inv = hosts.inventory.read_text()
    # A missing group.
    no_clients = tmp_path / "no-clients.yml"
    no_clients.write_text(re.sub(r"    clients:\n(        .*\n|      hosts:\n)+", "", inv))
    r = playbook(hosts, "check.yml", inventory=no_clients, check=False)
    assert r.returncode != 0 and "at least one in clients" in r.stdout, r.stdout[-3000:]
    # An unreachable host (an address no namespace has).
    unreachable = tmp_path / "unreachable.yml"
    unreachable.write_text(inv.replace("        c02: {", "        c09: {ansible_host: 10.123.9.9, "
                                       "dfuse_root: '/nonexistent'}\n        c02: {"))
    r = playbook(hosts, "check.yml", inventory=unreachable, check=False)
    assert r.returncode != 0 and re.search(r"c09.*UNREACHABLE", r.stdout), r.stdout[-3000:]
    # A kernel that cannot take dfuse.ko (every kernel but the module's).
    r = playbook(hosts, "check.yml", "-e", "dfuse_mode=dfuse", check=False)
    if Path("/dev/dfuse").exists():
        pytest.skip("dfuse.ko is loaded here: the wrong-kernel case needs another kernel")
    assert r.returncode != 0 and "but dfuse.ko is built for" in r.stdout, r.stdout[-3000:]
    # A port in use on the storage host (writethrough's storage port).
    squatter = subprocess.Popen(
        ["ip", "netns", "exec", hosts.ns("st01"), "python3", "-c",
         "import socket,sys,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, "
         "socket.SO_REUSEADDR, 1); s.bind((sys.argv[1], 17002)); s.listen(); time.sleep(600)",
         hosts.address["st01"]])
    try:
        for _ in range(50):
            if "17002" in subprocess.run(["ip", "netns", "exec", hosts.ns("st01"), "ss", "-Hltn"],
                                         capture_output=True, text=True).stdout:
                break
            subprocess.run(["sleep", "0.1"])
        r = playbook(hosts, "check.yml", check=False)
        assert r.returncode != 0 and "port 17002 on st01 is in use" in r.stdout, r.stdout[-3000:]
    finally:
        squatter.kill()
        squatter.wait()
    assert leftovers(hosts) == [], "a failed check started or left something"


def test_deploy_up_down_teardown(hosts):
    playbook(hosts, "check.yml")
    first = recap(playbook(hosts, "deploy.yml").stdout)
    assert all(v["changed"] > 0 for v in first.values()), first
    again = recap(playbook(hosts, "deploy.yml").stdout)
    assert all(v["changed"] == 0 for v in again.values()), f"second deploy changed: {again}"
    dry = recap(playbook(hosts, "deploy.yml", "--check", "--diff").stdout)
    assert all(v["changed"] == 0 and v["failed"] == 0 for v in dry.values()), dry
    # One mode here: the reproduce test below brings weakwriteback up and down
    # through the same playbooks.
    for mode in ("writethrough",):
        c1, c2 = (hosts.host_dir(c) / f"mnt/dfuse-{mode}" for c in ("c01", "c02"))
        playbook(hosts, "up.yml", "-e", f"dfuse_mode={mode}")
        for c in ("c01", "c02", "c03"):
            assert any(f"dfuse-{mode}" in m for m in hosts.mounts(c)), (c, hosts.mounts(c))
        # Mutual TLS on every link, etcd included, with the certificates the
        # tls role issued; nothing runs in plain text.
        daemons = [p for h in hosts.names for p in hosts.processes(h)]
        assert len(daemons) >= 6, daemons
        for p in daemons:  # the daemons, etcd, and the lease manager's etcdctl
            assert "--plaintext" not in p and "http://" not in p, p
            assert any(flag in p for flag in ("--tls-cert=", "--cert-file=", "--cert ")), p
        assert (hosts.host_dir("c01") / "etc/dfuse/tls/c01.key").stat().st_mode & 0o077 == 0
        # The fencing key is on the services that issue and check tokens only.
        assert (hosts.host_dir("st01") / "etc/dfuse/tls/fencing.key").stat().st_mode & 0o077 == 0
        assert not (hosts.host_dir("c01") / "etc/dfuse/tls/fencing.key").exists()
        assert all("--fencing-key=" in p for p in daemons if "dfuse-storage" in p
                   or "dfuse-lease-manager" in p), daemons
        steady = recap(playbook(hosts, "up.yml", "-e", f"dfuse_mode={mode}").stdout)
        assert all(v["changed"] == 0 for v in steady.values()), f"second up changed: {steady}"
        text = f"written on c01 in {mode} mode"
        hosts.on_host("c01", ["sh", "-c", f"echo '{text}' > {c1}/{mode}.txt"])
        assert hosts.on_host("c02", ["cat", f"{c2}/{mode}.txt"]).stdout.strip() == text
        playbook(hosts, "down.yml")
        for h in hosts.names:
            assert hosts.processes(h) == [] and hosts.mounts(h) == [], (h, hosts.processes(h))
        quiet = recap(playbook(hosts, "down.yml").stdout)
        assert all(v["changed"] == 0 for v in quiet.values()), f"second down changed: {quiet}"
    # The data outlived the daemons: it is on the storage host's export.
    export = hosts.host_dir("st01") / "var/lib/dfuse/writethrough/export"
    assert (export / "writethrough.txt").read_text().strip().endswith("writethrough mode")
    playbook(hosts, "up.yml")
    playbook(hosts, "teardown.yml")
    assert leftovers(hosts) == []
    playbook(hosts, "teardown.yml")  # twice is fine


def csv_header(path: Path) -> str:
    return path.read_text().splitlines()[0]


def test_make_reproduce_on_namespace_hosts(hosts, tmp_path):
    out = tmp_path / "results"
    r = hosts.run_control(
        ["make", "-C", str(REPO), "reproduce", f"INVENTORY={hosts.inventory}", "PROFILE=smoke",
         "MODES=writethrough,weakwriteback", "FIGURES=fig8,fig9,consistency", f"OUT={out}",
         "RUN=cluster", f"BUILD={build_dir()}", "CLIENT_ARGS=weakwriteback=--no-xattr"],
        check=False, timeout=1800)
    print(r.stdout[-5000:], r.stderr[-3000:])
    assert r.returncode == 0
    run = out / "cluster"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "complete", manifest.get("error")
    assert manifest["modes"] == ["writethrough", "weakwriteback"]
    cluster = manifest["cluster"]
    assert sorted(h["host"] for h in cluster["hosts"]) == ["c01", "c02", "c03", "st01"]
    assert all(h["kernel"] for h in cluster["hosts"]) and cluster["rtt_us_client_to_storage"] > 0
    fig8 = list(csv.DictReader(open(run / "fig8.csv")))
    assert sorted({(row["mode"], row["nodes"]) for row in fig8}) == [
        ("weakwriteback", "2"), ("weakwriteback", "3"), ("writethrough", "2"),
        ("writethrough", "3")]
    assert all(float(row["throughput_mb_s"]) > 0 and int(row["ops"]) > 0 for row in fig8), fig8
    assert len(list(csv.DictReader(open(run / "fig9.csv")))) == 12
    for fig in ("fig8", "fig9", "consistency"):
        assert (run / "figures" / f"{fig}.png").stat().st_size > 0
    # The checker ran on c01 and c02, each against its own mount, and their
    # histories were merged here within each host's measured clock offset.
    verdicts = {row["mode"]: row for row in csv.DictReader(open(run / "consistency.csv"))}
    assert sorted(verdicts) == ["weakwriteback", "writethrough"]
    wt = verdicts["writethrough"]
    assert (int(wt["operations"]), int(wt["non_linearizable"])) == (300, 0), wt
    report = json.loads((run / "raw/writethrough/checker-0-n2.report.json").read_text())
    assert len(report["clock_offsets_ns"]) == 2
    for lo, hi in report["clock_offsets_ns"]:
        # Namespaces share the kernel's clock: the true offset, 0, must lie within the
        # measured bound, and the bound is a round trip over ssh, not seconds.
        assert lo <= 0 <= hi and hi - lo < 500_000_000, report["clock_offsets_ns"]
    assert (run / "summary.md").exists()
    # CLIENT_ARGS reached weakwriteback's daemons on the hosts, and only
    # theirs: each of its mounts asked for an xattr once (answered ENOSYS),
    # writethrough's kernels once per write(2).
    assert manifest["client_args"] == {"weakwriteback": ["--no-xattr"]}
    getxattrs = {m: sum(json.loads(p.read_text()).get("counters", {}).get("fuse.getxattr", 0)
                        for p in (run / "raw" / m).glob("*.stats.json"))
                 for m in manifest["modes"]}
    assert getxattrs["weakwriteback"] <= 10 < 100 < getxattrs["writethrough"], getxattrs
    # Every node's raw output came back, as in a local run.
    assert (run / "raw/writethrough/fio-random-r50-c50-n3-node2.json").stat().st_size > 0
    assert leftovers(hosts) == [], "the run left something on the hosts"
    # The same columns as a local run's (one mode, same figures, here).
    local = tmp_path / "local"
    r = subprocess.run(["/usr/bin/python3", str(REPO / "tools/dfuse-reproduce"), "--build-dir",
                        str(build_dir()), "--net", "none", "--profile", "smoke", "--modes",
                        "weakwriteback", "--figures", "fig8,fig9,consistency", "--out", str(local),
                        "--run", "local"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for name in ("fig8.csv", "fig9.csv", "consistency.csv", "lease_latency.csv"):
        assert csv_header(run / name) == csv_header(local / "local" / name), name
    assert ({p.name for p in (run / "raw/weakwriteback").iterdir()}
            == {p.name for p in (local / "local/raw/weakwriteback").iterdir()})
