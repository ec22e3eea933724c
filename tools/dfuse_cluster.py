"""Local multi-node DFUSE cluster (ARCHITECTURE section 10).

One storage service and N client daemons ("nodes") on this machine, each
client mounting ``RUNDIR/nodeI/mnt``.  Used by the ``tools/dfuse-cluster`` CLI
and by the integration tests::

    from dfuse_cluster import Cluster
    with Cluster("/tmp/run", mode="writethrough", nodes=3) as c:
        (c.mount(0) / "f").write_bytes(b"x")
        c.kill_client(1, sig=9)
        c.restart_client(1)
        c.kill_storage(sig=9)
        c.restart_storage()
        print(c.stats(0))
    # everything is unmounted, stopped and removed here, even on error

Layout of RUNDIR::

    export/  state/            storage export and state directory
    storage/port  storage/stats.json
    nodeI/mnt  nodeI/stats.json
    logs/storage.log  logs/nodeI.log
    leasemgrI/port  leasemgrI/stats.json  leasemgrI/state/
    etcd/data/                 private etcd of an HA cluster (lease_managers >= 2)
    logs/leasemgrI.log  logs/etcd.log
    cluster.json               what runs where (rewritten after every change)

Lease managers (``lease_managers``, default 1 for modes in LEASE_MODES, else
0): with 1, one ``dfuse-lease-manager`` keeping its epoch in its state dir;
with 2 or more, a private single-member etcd on free loopback ports and that
many managers started with ``--etcd``, one of which wins the election.  Every
client gets ``--lease-manager ADDR[,ADDR...]`` (all managers), but only if its
binary's ``--help`` mentions that flag.  Managers and etcd share the storage
service's network namespace.

Network emulation (``net``):

* ``none``      loopback, no added delay;
* ``inprocess`` loopback, clients get ``--emulated-rtt-us RTT``;
* ``netns``     storage and every client in their own network namespace
  (``dfuse-<tag>-st`` / ``dfuse-<tag>-nI``), joined by veth pairs to a bridge
  inside a hub namespace (``dfuse-<tag>-hub``), addresses in 10.99.0.0/16 and
  ``tc netem delay RTT/2`` on both ends of each client's veth.  Clients are
  started with ``nsenter --net=...`` so their FUSE mounts live in the host's
  mount namespace and are visible to everyone;
* ``auto``      ``netns`` when RTT is 0 or netem works, else ``inprocess``.

The mode actually used is recorded in cluster.json (``net.used``).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.machinery
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

MODES = ("dfuse", "writethrough", "weakwriteback")
# Client modes whose daemons take leases from the lease manager.
LEASE_MODES = {"writethrough", "dfuse"}
LEASE_MANAGER = "dfuse-lease-manager"
NET_MODES = ("auto", "netns", "inprocess", "none")
FSTYPE_PREFIXES = ("fuse.dfuse-", "dfuse.dfuse-")  # stock FUSE, dfuse.ko
# The FUSE device modes without kernel leases mount: /dev/fuse, or /dev/dfuse
# (dfuse.ko) to compare every mode on one driver, as the VM testbed does.
FUSE_DEVICE = os.environ.get("DFUSE_FUSE_DEVICE", "/dev/fuse")
DFUSE_DEVICE = "/dev/dfuse"  # dfuse.ko's device: the dfuse mode needs it
DAEMON_NAMES = ("dfuse-storage", "dfuse-writethrough", "dfuse-weakwriteback", "dfuse-dfuse")
# Swept by ``down --all`` only when started by this tool (see tool_started).
SERVICE_NAMES = (LEASE_MANAGER, "etcd")
ETCD_NAME = "dfuse-etcd"
NETNS_PREFIX = "dfuse-"
NETNS_DIR = Path("/run/netns")
REPO_ROOT = Path(__file__).resolve().parent.parent
# A failed point keeps this much of the end of each daemon's log (collect_logs
# here and in ansible_cluster.py).
LOG_TAIL_BYTES = 256 * 1024

STORAGE_NS_ADDR = "10.99.0.1"


class ClusterError(RuntimeError):
    """A cluster could not be started, stopped or queried."""


# --------------------------------------------------------------------------
# binaries


def find_build_dir(explicit: Optional[str | os.PathLike] = None) -> Path:
    """The build directory: ``explicit``, else $DFUSE_BUILD_DIR, else REPO/build."""
    if explicit:
        return Path(explicit).resolve()
    env = os.environ.get("DFUSE_BUILD_DIR")
    if env:
        return Path(env).resolve()
    return REPO_ROOT / "build"


def available_modes() -> list[str]:
    """The modes this machine runs: dfuse only where dfuse.ko is loaded."""
    return [m for m in MODES if m != "dfuse" or os.path.exists(DFUSE_DEVICE)]


def fuse_device(mode: str) -> str:
    """The device a client of ``mode`` mounts."""
    return DFUSE_DEVICE if mode == "dfuse" else FUSE_DEVICE


def binary_path(build_dir: Path, name: str) -> Path:
    """Path of binary ``name`` (a daemon: "storage", "lease-manager" or a
    client mode; or a workload tool: "checker", "personality", "passthrough") under
    ``build_dir``."""
    if name == "storage":
        return build_dir / "storage" / "dfuse-storage"
    if name == "lease-manager":
        return build_dir / "lease" / LEASE_MANAGER
    if name == "checker":
        return build_dir / "workloads" / "consistency" / "dfuse-checker"
    if name == "personality":
        return build_dir / "workloads" / "personalities" / "dfuse-personality"
    if name == "passthrough":
        return build_dir / "workloads" / "passthrough" / "dfuse-passthrough"
    if name in MODES:
        return build_dir / "impl" / name / f"dfuse-{name}"
    raise ValueError(f"unknown daemon {name!r}")


def default_lease_managers(mode: str) -> int:
    return 1 if mode in LEASE_MODES else 0


def missing_binaries(build_dir: Path, mode: str, lease_managers: int = 0) -> list[Path]:
    """The binaries a cluster of ``mode`` needs that are absent or not executable."""
    out = []
    names = ["storage", mode] + (["lease-manager"] if lease_managers else [])
    for name in names:
        p = binary_path(build_dir, name)
        if not (p.is_file() and os.access(p, os.X_OK)):
            out.append(p)
    if lease_managers >= 2:
        for tool in ("etcd", "etcdctl"):
            if not shutil.which(tool):
                out.append(Path(tool + " (Debian etcd-server/etcd-client; tools/setup-deps.sh)"))
    return out


_help_texts: dict = {}


def _takes_flag(binary: str, flag: str) -> bool:
    """Whether ``binary --help`` lists ``flag``; asked once per build of the binary."""
    key = (binary, os.stat(binary).st_mtime_ns)
    if key not in _help_texts:
        r = _run([binary, "--help"], timeout=10)
        _help_texts[key] = r.stdout + r.stderr
    return flag in _help_texts[key]


CERTS_TOOL = REPO_ROOT / "tools" / "dfuse-certs"


@functools.cache
def _certs_module():
    """tools/dfuse-certs as a module, loaded once; None if this interpreter lacks
    python3-cryptography (the tool then runs under Debian's interpreter)."""
    loader = importlib.machinery.SourceFileLoader("dfuse_certs", str(CERTS_TOOL))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    try:
        loader.exec_module(module)
    except SystemExit:  # its import of cryptography failed
        return None
    return module


def _certs(args: list[str]) -> None:
    """Runs tools/dfuse-certs with ``args``; a failure is a ClusterError with its message.

    In this process when it can: a cluster's start needs six certificates and
    keys, and starting the tool six times cost seconds per cluster under the
    VM testbed's software emulation."""
    certs = _certs_module()
    if certs is not None:
        try:
            certs.run(certs.parser().parse_args(args))
        except (certs.Refused, OSError) as e:
            raise ClusterError(f"dfuse-certs {' '.join(args)}: {e}") from None
        return
    # Debian's interpreter has python3-cryptography (another one on PATH may not).
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    r = _run([python, str(CERTS_TOOL), *args], timeout=60)
    if r.returncode != 0:
        raise ClusterError(f"dfuse-certs {' '.join(args)}: {(r.stderr or r.stdout).strip()}")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------
# mounts


def _unescape_mountinfo(s: str) -> str:
    """Undo the octal escapes (\\040 etc.) used in /proc/self/mountinfo."""
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 4 <= len(s) and s[i + 1:i + 4].isdigit():
            out.append(chr(int(s[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def list_mounts() -> list[tuple[str, str]]:
    """(mountpoint, fstype) for every mount in this mount namespace."""
    mounts = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            if len(fields) < 5 or not right:
                continue
            mounts.append((_unescape_mountinfo(fields[4]), right.split()[0]))
    return mounts


def mount_fstype(path: str | os.PathLike) -> Optional[str]:
    """fstype of the topmost mount exactly at ``path`` (None if not a mountpoint)."""
    # Never stat the path itself: a dead or hung FUSE mount would block or fail.
    p = os.path.abspath(path)
    found = None
    for mp, fstype in list_mounts():
        if mp == p:
            found = fstype
    return found


def dfuse_mounts() -> list[str]:
    """Mountpoints of every ``fuse.dfuse-*`` or ``dfuse.dfuse-*`` mount on the machine."""
    return [mp for mp, t in list_mounts() if t.startswith(FSTYPE_PREFIXES)]


def mount_device(path: str | os.PathLike) -> Optional[tuple[int, int]]:
    """(major, minor) of the mount at ``path``; for FUSE the minor is the connection id."""
    p = os.path.abspath(path)
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split(" - ")[0].split()
            if len(fields) >= 5 and _unescape_mountinfo(fields[4]) == p:
                major, minor = fields[2].split(":")
                found = (int(major), int(minor))
    return found


FUSECTLS = (("fusectl", Path("/sys/fs/fuse/connections")),
            ("dfusectl", Path("/sys/fs/dfuse/connections")))


def abort_fuse_connection(conn: int) -> bool:
    """Abort FUSE connection ``conn`` through fusectl (or dfuse.ko's dfusectl).

    Last resort for a daemon that cannot exit: every request waiting on the
    connection fails with ENOTCONN, which frees stuck threads and processes.
    """
    for fstype, ctl_dir in FUSECTLS:
        if not ctl_dir.parent.exists():
            continue
        if not any(t == fstype for _, t in list_mounts()):
            _run(["mount", "-t", fstype, fstype, str(ctl_dir)])
        try:
            (ctl_dir / str(conn) / "abort").write_text("1")
            return True
        except OSError:
            continue
    return False


def _run(cmd: Sequence[str], timeout: float = 10, check: bool = False) -> subprocess.CompletedProcess:
    """Run a helper command quietly; never hangs longer than ``timeout``."""
    try:
        r = subprocess.run(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        r = subprocess.CompletedProcess(cmd, 124, "", f"timeout after {timeout}s")
    except FileNotFoundError as e:
        r = subprocess.CompletedProcess(cmd, 127, "", str(e))
    if check and r.returncode != 0:
        raise ClusterError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def unmount(path: str | os.PathLike, lazy_only: bool = False) -> bool:
    """Unmount ``path`` until it is no longer a mountpoint (stacked mounts too).

    Tries ``fusermount3 -u``, then ``fusermount3 -uz``, then ``umount -l``.
    Returns True if nothing is mounted there afterwards.
    """
    path = os.path.abspath(path)
    for _ in range(8):
        fstype = mount_fstype(path)
        if fstype is None:
            return True
        if fstype.startswith("fuse"):
            cmds = [] if lazy_only else [["fusermount3", "-u", path]]
            cmds += [["fusermount3", "-uz", path], ["umount", "-l", path]]
        else:
            cmds = ([] if lazy_only else [["umount", path]]) + [["umount", "-l", path]]
        for cmd in cmds:
            if _run(cmd, timeout=10).returncode == 0:
                break
    return mount_fstype(path) is None


# --------------------------------------------------------------------------
# processes


def pid_alive(pid: Optional[int]) -> bool:
    """True if any thread of ``pid`` is still running (not a zombie).

    A zombie thread-group leader whose other threads are stuck (e.g. in a FUSE
    request) still holds its files, /dev/fuse included: that counts as alive.
    """
    if not pid:
        return False
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError):
        return False
    for t in tasks:
        try:
            with open(f"/proc/{pid}/task/{t}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
                    return True
        except (OSError, IndexError):
            continue
    return False


def pid_cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def pid_starttime(pid: Optional[int]) -> Optional[int]:
    """Start time of ``pid`` in clock ticks since boot (identifies a process across pid reuse)."""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def pid_matches(pid: Optional[int], starttime: Optional[int]) -> bool:
    """True if ``pid`` is alive and is the process that started at ``starttime``."""
    if not pid_alive(pid):
        return False
    return starttime is None or pid_starttime(pid) == starttime


def kernel_stacks(pid: int) -> str:
    """The threads of ``pid`` that sleep uninterruptibly (state D, which even SIGKILL
    waits for) with their kernel stacks, for the report of a daemon that will not
    exit; "" if none or unreadable (the stacks need root)."""
    out = []
    try:
        tids = sorted(os.listdir(f"/proc/{pid}/task"), key=int)
    except OSError:
        return ""
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
            if stat[stat.rindex(")") + 2] != "D":
                continue
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                comm = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/stack") as f:
                frames = [ln.split()[-1].split("+")[0] for ln in f if ln.strip()]
        except (OSError, ValueError, IndexError):
            continue
        out.append(f"{tid} {comm}: " + " < ".join(frames[:8]))
    return "; ".join(out)


def stop_pid(pid: Optional[int], starttime: Optional[int] = None, term_timeout: float = 10,
             popen: Optional[subprocess.Popen] = None) -> None:
    """SIGTERM ``pid``, wait up to ``term_timeout`` s, then SIGKILL; reap if ours.

    With ``starttime`` set, a pid that now belongs to another process is left alone.
    """
    if not pid:
        return
    if popen is None and not pid_matches(pid, starttime):
        return
    for sig, wait in ((signal.SIGTERM, term_timeout), (signal.SIGKILL, 5)):
        if (popen is not None and popen.poll() is not None) or not pid_alive(pid):
            break
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if popen is not None and popen.poll() is not None:
                break
            if not pid_alive(pid):
                break
            time.sleep(0.05)
    if popen is not None:
        try:
            popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def tail(path: str | os.PathLike, lines: int = 20) -> str:
    """Last ``lines`` lines of a log file ('' if unreadable)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 16384))
            data = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


# --------------------------------------------------------------------------
# network namespaces


def list_netns() -> list[str]:
    try:
        return sorted(p.name for p in NETNS_DIR.iterdir())
    except FileNotFoundError:
        return []


def delete_netns(name: str) -> None:
    """Delete a namespace; its veth ends go with it (the peers too)."""
    if name in list_netns():
        _run(["ip", "netns", "del", name])


def probe_netem() -> tuple[bool, str]:
    """Whether ``tc qdisc ... netem`` works here; (ok, reason)."""
    ns = f"{NETNS_PREFIX}probe-{os.getpid()}"
    r = _run(["ip", "netns", "add", ns])
    if r.returncode != 0:
        return False, f"ip netns add failed: {r.stderr.strip()}"
    try:
        _run(["ip", "-n", ns, "link", "set", "lo", "up"])
        r = _run(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "lo", "root",
                  "netem", "delay", "1ms"])
        if r.returncode != 0:
            return False, f"netem unavailable: {r.stderr.strip() or r.returncode}"
        return True, "netem works"
    finally:
        delete_netns(ns)


def netns_supported() -> tuple[bool, str]:
    """Whether network namespaces and veth pairs can be created here."""
    if os.geteuid() != 0:
        return False, "not root"
    ns = f"{NETNS_PREFIX}probe-{os.getpid()}"
    r = _run(["ip", "netns", "add", ns])
    if r.returncode != 0:
        return False, f"ip netns add failed: {r.stderr.strip()}"
    delete_netns(ns)
    return True, "ok"


# --------------------------------------------------------------------------
# the cluster


def _ns_tag(rundir: Path) -> str:
    return NETNS_PREFIX + hashlib.sha1(str(rundir).encode()).hexdigest()[:6]


class Cluster:
    """A storage service plus ``nodes`` client daemons of one ``mode``.

    ``up()`` (or ``with Cluster(...)``) starts everything and waits until each
    mount is ready; ``down()`` stops everything and is idempotent.  Every
    change is recorded in RUNDIR/cluster.json so ``Cluster.load(rundir).down()``
    works from another process.
    """

    def __init__(self, rundir: str | os.PathLike, mode: str = "writethrough", nodes: int = 1,
                 rtt_us: int = 0, net: str = "auto", build_dir: Optional[str | os.PathLike] = None,
                 cache_size: Optional[str] = None, client_args: Iterable[str] = (),
                 storage_args: Iterable[str] = (), ready_timeout: float = 30.0,
                 progress: Optional[Callable[[str], None]] = None,
                 lease_managers: Optional[int] = None, lease_manager_args: Iterable[str] = (),
                 tls: bool = True):
        if mode not in MODES:
            raise ClusterError(f"unknown mode {mode!r} (choose from {', '.join(MODES)})")
        if net not in NET_MODES:
            raise ClusterError(f"unknown network emulation {net!r} (choose from {', '.join(NET_MODES)})")
        if nodes < 1:
            raise ClusterError("need at least one node")
        if lease_managers is None:
            lease_managers = default_lease_managers(mode)
        if lease_managers < 0:
            raise ClusterError("the number of lease managers cannot be negative")
        self.rundir = Path(rundir).resolve()
        self.mode = mode
        self.nodes = nodes
        self.rtt_us = int(rtt_us)
        self.net_requested = net
        self.net_used: Optional[str] = None
        self.net_reason = ""
        self.build_dir = find_build_dir(build_dir)
        self.cache_size = cache_size
        self.client_args = list(client_args)
        self.storage_args = list(storage_args)
        self.ready_timeout = float(os.environ.get("DFUSE_CLUSTER_TIMEOUT", ready_timeout))
        self.progress = progress or (lambda msg: None)
        self.tag = _ns_tag(self.rundir)
        self.netns: list[str] = []
        self.storage: dict = {}
        self.clients: list[dict] = []
        self.lease_manager_count = int(lease_managers)
        self.lease_manager_args = list(lease_manager_args)
        self.lease_managers: list[dict] = []
        # Mutual TLS on every link (clients to storage and lease managers,
        # managers to etcd), with a CA and certificates made in RUNDIR/tls by
        # tools/dfuse-certs at up(). Without it every daemon gets --plaintext,
        # which they accept on loopback addresses only.
        self.tls = bool(tls)
        self.etcd: dict = {}
        # Whether the client binary takes --lease-manager (asked once, on first use).
        self.lease_flag: Optional[bool] = None
        self._popen: dict[int, subprocess.Popen] = {}
        self.status = "new"
        # Problems seen while stopping daemons (stuck processes, leftover mounts).
        self.anomalies: list[str] = []

    # ---- paths

    @property
    def export_dir(self) -> Path:
        return self.rundir / "export"

    @property
    def state_dir(self) -> Path:
        return self.rundir / "state"

    @property
    def state_file(self) -> Path:
        return self.rundir / "cluster.json"

    def mount(self, i: int) -> Path:
        """Mountpoint of node ``i``."""
        return self.rundir / f"node{i}" / "mnt"

    def __enter__(self) -> "Cluster":
        self.up()
        return self

    def __exit__(self, *exc) -> None:
        self.down()

    # ---- state file

    def to_dict(self) -> dict:
        return {
            "rundir": str(self.rundir), "mode": self.mode, "nodes": self.nodes,
            "rtt_us": self.rtt_us, "build_dir": str(self.build_dir),
            "cache_size": self.cache_size, "client_args": self.client_args,
            "storage_args": self.storage_args, "status": self.status,
            "net": {"requested": self.net_requested, "used": self.net_used,
                    "reason": self.net_reason, "namespaces": self.netns, "tag": self.tag},
            "export": str(self.export_dir), "state_dir": str(self.state_dir),
            "storage": self.storage, "clients": self.clients,
            "lease_manager_count": self.lease_manager_count,
            "lease_manager_args": self.lease_manager_args,
            "lease_managers": self.lease_managers, "etcd": self.etcd,
            "lease_flag": self.lease_flag, "tls": self.tls,
        }

    def save(self) -> None:
        self.rundir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        os.replace(tmp, self.state_file)

    @classmethod
    def load(cls, rundir: str | os.PathLike) -> "Cluster":
        """A Cluster describing the one recorded in RUNDIR/cluster.json."""
        rundir = Path(rundir).resolve()
        try:
            d = json.loads((rundir / "cluster.json").read_text())
        except FileNotFoundError:
            raise ClusterError(f"no cluster.json in {rundir}") from None
        c = cls(rundir, mode=d["mode"], nodes=d["nodes"], rtt_us=d.get("rtt_us", 0),
                net=d["net"]["requested"], build_dir=d.get("build_dir"),
                cache_size=d.get("cache_size"), client_args=d.get("client_args", ()),
                storage_args=d.get("storage_args", ()),
                lease_managers=d.get("lease_manager_count", 0),
                lease_manager_args=d.get("lease_manager_args", ()), tls=d.get("tls", False))
        c.lease_managers = d.get("lease_managers", [])
        c.etcd = d.get("etcd", {})
        c.lease_flag = d.get("lease_flag")
        c.net_used = d["net"].get("used")
        c.net_reason = d["net"].get("reason", "")
        c.netns = list(d["net"].get("namespaces", []))
        c.storage = d.get("storage", {})
        c.clients = d.get("clients", [])
        c.status = d.get("status", "unknown")
        return c

    # ---- lifecycle

    def up(self) -> "Cluster":
        """Start storage and every client; on any failure tear everything down."""
        missing = missing_binaries(self.build_dir, self.mode, self.lease_manager_count)
        if missing:
            raise ClusterError("missing binaries: " + ", ".join(map(str, missing))
                               + " (build with: cmake --build BUILD)")
        if self.state_file.exists():
            old = Cluster.load(self.rundir)
            if old.status not in ("down",):
                self.progress(f"stale cluster in {self.rundir}: tearing it down first")
                old.down()
        try:
            self.status = "starting"
            for d in (self.export_dir, self.state_dir, self.rundir / "logs", self.rundir / "storage"):
                d.mkdir(parents=True, exist_ok=True)
            self.clients = [{
                "index": i, "mountpoint": str(self.mount(i)), "pid": None,
                "log": str(self.rundir / "logs" / f"node{i}.log"),
                "stats": str(self.rundir / f"node{i}" / "stats.json"),
                "netns": None, "node_name": f"node{i}",
            } for i in range(self.nodes)]
            for i in range(self.nodes):
                self.mount(i).mkdir(parents=True, exist_ok=True)
            self._choose_net()
            self.save()
            if self.net_used == "netns" and not self.tls:
                raise ClusterError("plain text is refused off loopback, and the emulated network "
                                   "(netns) has its own addresses: use TLS (the default) or "
                                   "--net inprocess")
            if self.net_used == "netns":
                self._setup_netns()
            if self.tls:
                self._make_certs()
            self._make_fencing_key()
            self.start_storage()
            self._start_lease_service()
            for i in range(self.nodes):
                self.start_client(i, wait=False)
            for i in range(self.nodes):
                self.wait_client_ready(i)
            self.status = "up"
            self.save()
            self.progress(f"cluster up: {self.nodes} x {self.mode}, net={self.net_used}, "
                          f"storage {self.storage.get('address')}")
            return self
        except BaseException:
            self.progress("start failed: tearing down")
            self.down()
            raise

    def down(self) -> None:
        """Unmount, stop every process and remove namespaces. Idempotent."""
        for c in self.clients:
            self._stop_client(c)
        self._stop_storage()
        self._stop_lease_service()
        for c in self.clients:
            if not unmount(c["mountpoint"]):
                self.anomalies.append(f"{c['mountpoint']} is still mounted")
                self.progress(f"warning: {c['mountpoint']} is still mounted")
        # Mounts we do not know about (e.g. a half-started client) under the run dir.
        for mp in dfuse_mounts():
            if mp.startswith(str(self.rundir) + "/"):
                unmount(mp)
        for ns in list(self.netns) + [n for n in list_netns() if n.startswith(self.tag + "-")]:
            delete_netns(ns)
        self.netns = []
        self.status = "down"
        if self.rundir.exists():
            self.save()

    def collect_logs(self, dest: Path, tail_bytes: int = LOG_TAIL_BYTES) -> None:
        """Copies the end of every daemon's log (logs/ of the run dir, which goes away
        with it) into ``dest``, for a failed point."""
        dest.mkdir(parents=True, exist_ok=True)
        for log in sorted((self.rundir / "logs").glob("*.log")):
            with open(log, "rb") as f:
                f.seek(max(0, log.stat().st_size - tail_bytes))
                (dest / log.name).write_bytes(f.read())

    # ---- network

    def _choose_net(self) -> None:
        want = self.net_requested
        if want == "none":
            self.net_used, self.net_reason = "none", "requested"
            if self.rtt_us:
                self.progress("warning: --net none ignores --rtt-us")
            return
        if want == "inprocess":
            self.net_used, self.net_reason = "inprocess", "requested"
            return
        ok, why = netns_supported()
        if want == "netns":
            if not ok:
                raise ClusterError(f"network namespaces unavailable: {why}")
            if self.rtt_us:
                ok, why = probe_netem()
                if not ok:
                    raise ClusterError(f"--net netns needs tc netem for --rtt-us {self.rtt_us}: "
                                       f"{why}; use --net auto or --net inprocess")
            self.net_used, self.net_reason = "netns", "requested"
            return
        # auto
        if self.rtt_us == 0:
            self.net_used, self.net_reason = "none", "auto: no delay requested"
            return
        if ok:
            ok, why = probe_netem()
        if ok:
            self.net_used, self.net_reason = "netns", "auto: netem works"
        else:
            self.net_used, self.net_reason = "inprocess", f"auto: {why}"
        self.progress(f"network emulation: {self.net_used} ({self.net_reason})")

    def _ip(self, *args: str) -> None:
        _run(["ip", *args], check=True)

    def _setup_netns(self) -> None:
        """Hub namespace with a bridge; storage and each client joined by a veth pair."""
        hub, st = f"{self.tag}-hub", f"{self.tag}-st"
        for ns in [hub, st] + [f"{self.tag}-n{i}" for i in range(self.nodes)]:
            self._ip("netns", "add", ns)
            self.netns.append(ns)
            self.save()
            self._ip("-n", ns, "link", "set", "lo", "up")
        self._ip("-n", hub, "link", "add", "br0", "type", "bridge")
        self._ip("-n", hub, "link", "set", "br0", "up")
        half_ms = f"{self.rtt_us / 2000.0:.3f}ms"

        def attach(ns: str, hub_if: str, addr: str, delay: bool) -> None:
            self._ip("link", "add", hub_if, "netns", hub, "type", "veth",
                     "peer", "name", "eth0", "netns", ns)
            self._ip("-n", hub, "link", "set", hub_if, "master", "br0")
            self._ip("-n", hub, "link", "set", hub_if, "up")
            self._ip("-n", ns, "addr", "add", f"{addr}/16", "dev", "eth0")
            self._ip("-n", ns, "link", "set", "eth0", "up")
            if delay:
                for n, dev in ((ns, "eth0"), (hub, hub_if)):
                    _run(["ip", "netns", "exec", n, "tc", "qdisc", "add", "dev", dev, "root",
                          "netem", "delay", half_ms], check=True)

        attach(st, "s0", STORAGE_NS_ADDR, False)
        for i in range(self.nodes):
            ns = f"{self.tag}-n{i}"
            attach(ns, f"n{i}", f"10.99.1.{i + 1}", self.rtt_us > 0)
            self.clients[i]["netns"] = ns
            self.clients[i]["address"] = f"10.99.1.{i + 1}"
        self.progress(f"network namespaces ready ({len(self.netns)}), rtt {self.rtt_us} us")

    def _nsenter(self, ns: Optional[str]) -> list[str]:
        return ["nsenter", f"--net={NETNS_DIR / ns}", "--"] if ns else []

    # ---- storage

    def start_storage(self, port: Optional[int] = None) -> None:
        """Start the storage service (on ``port``, or its old port, or a free one)."""
        if self.storage.get("pid") and pid_alive(self.storage["pid"]):
            raise ClusterError("storage is already running")
        ns = f"{self.tag}-st" if self.net_used == "netns" else None
        host = STORAGE_NS_ADDR if ns else "127.0.0.1"
        if port is None:
            port = self.storage.get("port", 0)
        port_file = self.rundir / "storage" / "port"
        port_file.unlink(missing_ok=True)
        binary = str(binary_path(self.build_dir, "storage"))
        cmd = self._nsenter(ns) + [binary, "--export", str(self.export_dir), "--listen",
                                   f"{host}:{port}", "--state-dir", str(self.state_dir),
                                   "--port-file", str(port_file),
                                   "--stats", str(self.rundir / "storage" / "stats.json")]
        cmd += self._tls_flags("storage") + self._fencing_flags()
        # The test cluster's clients run their workloads as root: root is
        # not squashed here unless the caller's storage_args say otherwise.
        if "--default-access" not in self.storage_args:
            cmd += ["--default-access", "rw,no_root_squash"]
        cmd += self.storage_args
        log = self.rundir / "logs" / "storage.log"
        proc = self._spawn(cmd, log)
        self.storage = {"pid": proc.pid, "starttime": pid_starttime(proc.pid), "binary": binary, "cmd": cmd, "log": str(log),
                        "netns": ns, "host": host, "port": port,
                        "stats": str(self.rundir / "storage" / "stats.json")}
        self.save()
        self.progress(f"storage starting (pid {proc.pid})")
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if proc.poll() is not None:
                raise ClusterError(f"storage exited with status {proc.returncode} during start; "
                                   f"{log} ends with:\n{tail(log)}")
            try:
                text = port_file.read_text().strip()
                if text:
                    port = int(text)
                    break
            except (FileNotFoundError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise ClusterError(f"storage did not write {port_file} within "
                                   f"{self.ready_timeout:.0f}s; {log} ends with:\n{tail(log)}")
            time.sleep(0.05)
        self.storage.update(port=port, address=f"{host}:{port}")
        self.save()
        self.progress(f"storage listening on {host}:{port}")

    def _stop_storage(self) -> None:
        pid = self.storage.get("pid")
        if pid:
            stop_pid(pid, self.storage.get("starttime"), popen=self._popen.pop(pid, None))
            self.storage["pid"] = None
            self.save() if self.rundir.exists() else None

    def kill_storage(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the storage service and wait for it to exit."""
        pid = self.storage.get("pid")
        if not pid or not pid_alive(pid):
            raise ClusterError("storage is not running")
        os.kill(pid, sig)
        self._wait_exit(pid, 10)
        self.storage["pid"] = None
        self.save()

    def restart_storage(self) -> None:
        """Stop the storage service if it runs, then start it on the same port."""
        self._stop_storage()
        self.start_storage(port=self.storage.get("port"))

    def storage_alive(self) -> bool:
        return pid_alive(self.storage.get("pid"))

    # ---- TLS

    @property
    def tls_dir(self) -> Path:
        return self.rundir / "tls"

    def _make_certs(self) -> None:
        """The cluster CA and a certificate for storage, the lease managers (both valid
        for every address they may listen on) and each client node."""
        d = str(self.tls_dir)
        ips = ["--ip", "127.0.0.1", "--ip", STORAGE_NS_ADDR]
        jobs = [["ca", d, "--force"], ["issue", d, "storage", *ips, "--force"],
                ["issue", d, "lease-manager", *ips, "--force"]]
        jobs += [["issue", d, c["node_name"], "--force"] for c in self.clients]
        if self.lease_manager_count >= 2:
            jobs.append(["issue", d, "etcd", *ips, "--force"])
        for args in jobs:
            _certs(args)
        self.progress(f"TLS: CA and certificates in {d}")

    @property
    def fencing_key(self) -> Path:
        return self.rundir / "fencing.key"

    def _make_fencing_key(self) -> None:
        """The secret the storage service and the lease managers share: fencing tokens
        count at storage only with the proof their manager granted (util/fencing_key.h)."""
        _certs(["fencing-key", str(self.rundir), "--force"])

    def _fencing_flags(self) -> list[str]:
        return ["--fencing-key", str(self.fencing_key)] if self.fencing_key.exists() else []

    def _tls_flags(self, name: str) -> list[str]:
        if not self.tls:
            return ["--plaintext"]
        d = self.tls_dir
        return ["--tls-ca", str(d / "ca.crt"), "--tls-cert", str(d / f"{name}.crt"),
                "--tls-key", str(d / f"{name}.key")]

    # ---- lease managers and etcd

    @property
    def lease_manager_addresses(self) -> list[str]:
        """HOST:PORT of every lease manager, in index order (those that started)."""
        return [m["address"] for m in self.lease_managers if m.get("address")]

    def _service_host(self) -> tuple[Optional[str], str]:
        """(netns, host) that storage, lease managers and etcd listen in."""
        ns = f"{self.tag}-st" if self.net_used == "netns" else None
        return ns, (STORAGE_NS_ADDR if ns else "127.0.0.1")

    def _start_lease_service(self) -> None:
        """etcd (for 2+ managers) and every lease manager; waits until one is active."""
        if self.lease_manager_count == 0:
            return
        ns, host = self._service_host()
        if self.lease_manager_count >= 2:
            self.start_etcd()
        self.lease_managers = []
        for i in range(self.lease_manager_count):
            d = self.rundir / f"leasemgr{i}"
            d.mkdir(parents=True, exist_ok=True)
            self.lease_managers.append({
                "index": i, "pid": None, "netns": ns, "host": host, "port": 0,
                "log": str(self.rundir / "logs" / f"leasemgr{i}.log"),
                "stats": str(d / "stats.json"), "port_file": str(d / "port"),
                "state_dir": str(d / "state")})
        for i in range(self.lease_manager_count):
            self.start_lease_manager(i, wait=False)
        for i in range(self.lease_manager_count):
            self._wait_lease_manager_port(i)
        active = self.wait_active_lease_manager()
        self.progress(f"lease manager {active} is active "
                      f"({len(self.lease_managers)} manager(s): {','.join(self.lease_manager_addresses)})")

    def _lease_manager_cmd(self, i: int) -> list[str]:
        m = self.lease_managers[i]
        binary = str(binary_path(self.build_dir, "lease-manager"))
        cmd = self._nsenter(m["netns"]) + [
            binary, "--listen", f"{m['host']}:{m['port']}", "--port-file", m["port_file"],
            "--stats", m["stats"]]
        if self.etcd:
            # The epoch lives in etcd; the advertised address is HOST:bound port.
            cmd += ["--etcd", self.etcd["endpoint"], "--election-name", "dfuse"]
        else:
            # Epoch = last one in the state dir + 1: no wait for a wall-clock slot.
            cmd += ["--state-dir", m["state_dir"]]
        return (cmd + self._tls_flags("lease-manager") + self._fencing_flags()
                + self.lease_manager_args)

    def start_lease_manager(self, i: int, wait: bool = True) -> None:
        """Start lease manager ``i`` (on its old port once it had one)."""
        m = self.lease_managers[i]
        if m.get("pid") and pid_alive(m["pid"]):
            raise ClusterError(f"lease manager {i} is already running")
        Path(m["port_file"]).unlink(missing_ok=True)
        cmd = self._lease_manager_cmd(i)
        proc = self._spawn(cmd, Path(m["log"]))
        m.update(pid=proc.pid, starttime=pid_starttime(proc.pid), cmd=cmd)
        self.save()
        self.progress(f"lease manager {i} starting (pid {proc.pid})")
        if wait:
            self._wait_lease_manager_port(i)

    def _wait_lease_manager_port(self, i: int) -> None:
        m = self.lease_managers[i]
        port = self._wait_port_file(m["pid"], Path(m["port_file"]), Path(m["log"]), f"lease manager {i}")
        m.update(port=port, address=f"{m['host']}:{port}")
        self.save()

    def _wait_port_file(self, pid: int, port_file: Path, log: Path, what: str) -> int:
        """The port a daemon wrote to ``port_file``; fails if it exits or takes too long."""
        proc = self._popen.get(pid)
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if (proc.poll() is not None) if proc else not pid_alive(pid):
                rc = proc.returncode if proc else "?"
                raise ClusterError(f"{what} exited with status {rc} during start; "
                                   f"{log} ends with:\n{tail(log)}")
            try:
                text = port_file.read_text().strip()
                if text:
                    return int(text)
            except (FileNotFoundError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise ClusterError(f"{what} did not write {port_file} within "
                                   f"{self.ready_timeout:.0f}s; {log} ends with:\n{tail(log)}")
            time.sleep(0.05)

    def stop_lease_manager(self, i: int) -> None:
        """SIGTERM (then SIGKILL) lease manager ``i``; an active one resigns."""
        m = self.lease_managers[i]
        if m.get("pid"):
            stop_pid(m["pid"], m.get("starttime"), popen=self._popen.pop(m["pid"], None))
            m["pid"] = None
            self.save()

    def kill_lease_manager(self, i: int, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to lease manager ``i`` and wait for it to exit."""
        m = self.lease_managers[i]
        if not m.get("pid") or not pid_alive(m["pid"]):
            raise ClusterError(f"lease manager {i} is not running")
        os.kill(m["pid"], sig)
        self._wait_exit(m["pid"], 10)
        m["pid"] = None
        self.save()

    def restart_lease_manager(self, i: int) -> None:
        """Stop lease manager ``i`` if it runs, then start it on the same port."""
        self.stop_lease_manager(i)
        self.start_lease_manager(i)

    def lease_manager_alive(self, i: int) -> bool:
        return pid_alive(self.lease_managers[i].get("pid"))

    def lease_stats(self, i: int, timeout: float = 10.0) -> dict:
        """Stats dump of lease manager ``i`` (SIGUSR1), parsed; ``["lease"]`` has
        ``active``, ``epoch``, ``leader``, sessions, grants, reclaims..."""
        return self._dump_stats(self.lease_managers[i], f"lease manager {i}", timeout)

    def active_lease_manager(self) -> Optional[int]:
        """Index of the manager that serves now (highest epoch among those that say
        they are active), or None during an election."""
        found = self._active_lease_manager()
        return found[0] if found else None

    def _active_lease_manager(self) -> Optional[tuple[int, int]]:
        best = None
        for i, m in enumerate(self.lease_managers):
            if not pid_alive(m.get("pid")):
                continue
            try:
                lease = self.lease_stats(i, timeout=3).get("lease", {})
            except ClusterError:
                continue
            if lease.get("active") and (best is None or lease["epoch"] > best[1]):
                best = (i, lease["epoch"])
        return best

    def wait_active_lease_manager(self, timeout: Optional[float] = None,
                                  min_epoch: int = 0) -> int:
        """Wait until some manager is active with an epoch >= ``min_epoch``; its index."""
        timeout = self.ready_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            found = self._active_lease_manager()
            if found and found[1] >= min_epoch:
                return found[0]
            if time.monotonic() > deadline:
                logs = "\n".join(f"{m['log']}:\n{tail(m['log'], 5)}" for m in self.lease_managers)
                raise ClusterError(f"no active lease manager (epoch >= {min_epoch}) "
                                   f"within {timeout:.0f}s\n{logs}")
            time.sleep(0.1)

    def start_etcd(self) -> None:
        """A private single-member etcd on free loopback ports, data under RUNDIR/etcd."""
        ns, _ = self._service_host()
        client, peer = free_port(), free_port()
        scheme = "https" if self.tls else "http"
        # One member: its peer port stays on loopback in plain text.
        client_url, peer_url = f"{scheme}://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
        data = self.rundir / "etcd" / "data"
        data.parent.mkdir(parents=True, exist_ok=True)
        cmd = self._nsenter(ns) + [
            shutil.which("etcd") or "etcd", "--name", ETCD_NAME, "--data-dir", str(data),
            "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
            "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"{ETCD_NAME}={peer_url}", "--logger", "zap",
            "--log-level", "warn"]
        if self.tls:
            d = self.tls_dir
            cmd += ["--cert-file", str(d / "etcd.crt"), "--key-file", str(d / "etcd.key"),
                    "--trusted-ca-file", str(d / "ca.crt"), "--client-cert-auth"]
        log = self.rundir / "logs" / "etcd.log"
        proc = self._spawn(cmd, log)
        self.etcd = {"pid": proc.pid, "starttime": pid_starttime(proc.pid), "cmd": cmd,
                     "log": str(log), "netns": ns, "data_dir": str(data),
                     "endpoint": f"127.0.0.1:{client}", "peer_url": peer_url}
        self.save()
        self.progress(f"etcd starting (pid {proc.pid}) on 127.0.0.1:{client}")
        deadline = time.monotonic() + self.ready_timeout
        while self.etcdctl("endpoint", "health").returncode != 0:
            if proc.poll() is not None:
                raise ClusterError(f"etcd exited with status {proc.returncode} during start; "
                                   f"{log} ends with:\n{tail(log)}")
            if time.monotonic() > deadline:
                raise ClusterError(f"etcd not healthy within {self.ready_timeout:.0f}s; "
                                   f"{log} ends with:\n{tail(log)}")
            time.sleep(0.1)

    def etcdctl(self, *args: str, timeout: float = 10) -> subprocess.CompletedProcess:
        """Run etcdctl against the cluster's etcd (in its namespace)."""
        if not self.etcd:
            raise ClusterError("this cluster has no etcd (lease_managers < 2)")
        endpoint = self.etcd["endpoint"]
        tls: list[str] = []
        if self.tls:
            d = self.tls_dir
            endpoint = "https://" + endpoint
            tls = ["--cacert", str(d / "ca.crt"), "--cert", str(d / "lease-manager.crt"),
                   "--key", str(d / "lease-manager.key")]
        cmd = self._nsenter(self.etcd.get("netns")) + [
            "etcdctl", "--endpoints", endpoint, "--dial-timeout", "1s", *tls, *args]
        return _run(cmd, timeout=timeout)

    def _stop_lease_service(self) -> None:
        for m in self.lease_managers:
            if m.get("pid"):
                stop_pid(m["pid"], m.get("starttime"), popen=self._popen.pop(m["pid"], None))
                m["pid"] = None
        if self.etcd.get("pid"):
            stop_pid(self.etcd["pid"], self.etcd.get("starttime"),
                     popen=self._popen.pop(self.etcd["pid"], None))
            self.etcd["pid"] = None
        # Half-started ones that never made it into cluster.json.
        for pid, name in service_pids():
            if any(a.startswith(str(self.rundir) + "/") for a in pid_cmdline(pid)):
                self.progress(f"stopping stray {name} pid {pid}")
                stop_pid(pid)

    # ---- clients

    def _client_cmd(self, i: int) -> list[str]:
        c = self.clients[i]
        addr = self.storage["address"]
        # The client waits for its storage service and lease managers nearly
        # as long as this tool waits for the mount (DFUSE_CLUSTER_TIMEOUT on a
        # slow machine or guest), not its own 20 s; a little less, so its own
        # reason for giving up is in its log when this tool reports it.
        args = ["--stats", c["stats"], "--node-name", c["node_name"],
                "--connect-timeout", f"{max(1.0, self.ready_timeout * 0.9):g}"]
        args += self._tls_flags(c["node_name"])
        if self.cache_size:
            args += ["--cache-size", str(self.cache_size)]
        if self.net_used == "inprocess" and self.rtt_us:
            args += ["--emulated-rtt-us", str(self.rtt_us)]
        if self.lease_managers and self.mode in LEASE_MODES and self._client_takes_lease_flag():
            args += ["--lease-manager", ",".join(self.lease_manager_addresses)]
        if self.mode != "dfuse" and FUSE_DEVICE != "/dev/fuse":
            args += ["--fuse-device", FUSE_DEVICE]
        binary = str(binary_path(self.build_dir, self.mode))
        return self._nsenter(c.get("netns")) + [binary] + args + self.client_args + [addr, c["mountpoint"]]

    def _client_takes_lease_flag(self) -> bool:
        """Whether the client binary accepts --lease-manager (older builds reject it)."""
        if self.lease_flag is None:
            binary = str(binary_path(self.build_dir, self.mode))
            self.lease_flag = _takes_flag(binary, "--lease-manager")
            if not self.lease_flag:
                self.progress(f"{binary} has no --lease-manager flag: clients run without leases")
            self.save()
        return self.lease_flag

    def start_client(self, i: int, wait: bool = True) -> None:
        """Start client daemon ``i``; with ``wait``, until its mount is ready."""
        c = self.clients[i]
        if c.get("pid") and pid_alive(c["pid"]):
            raise ClusterError(f"client {i} is already running")
        if not self.storage.get("address"):
            raise ClusterError("storage has not been started")
        if mount_fstype(c["mountpoint"]) is not None:
            raise ClusterError(f"{c['mountpoint']} is already mounted")
        Path(c["mountpoint"]).mkdir(parents=True, exist_ok=True)
        cmd = self._client_cmd(i)
        proc = self._spawn(cmd, Path(c["log"]))
        c.update(pid=proc.pid, starttime=pid_starttime(proc.pid), binary=str(binary_path(self.build_dir, self.mode)), cmd=cmd)
        self.save()
        self.progress(f"node{i} starting (pid {proc.pid}) on {c['mountpoint']}")
        if wait:
            self.wait_client_ready(i)

    def wait_client_ready(self, i: int) -> None:
        """Wait until node ``i``'s mount shows in mountinfo, or fail with its log."""
        c = self.clients[i]
        want = {prefix + self.mode for prefix in FSTYPE_PREFIXES}
        proc = self._popen.get(c["pid"])
        deadline = time.monotonic() + self.ready_timeout
        while True:
            fstype = mount_fstype(c["mountpoint"])
            if fstype in want:
                dev = mount_device(c["mountpoint"])
                c["fuse_conn"] = dev[1] if dev else None
                self.save()
                self.progress(f"node{i} mounted")
                return
            exited = proc.poll() is not None if proc else not pid_alive(c["pid"])
            if exited:
                rc = proc.returncode if proc else "?"
                raise ClusterError(f"client node{i} exited with status {rc} before mounting; "
                                   f"{c['log']} ends with:\n{tail(c['log'])}")
            if time.monotonic() > deadline:
                raise ClusterError(f"client node{i} did not mount {c['mountpoint']} within "
                                   f"{self.ready_timeout:.0f}s (found fstype {fstype}); "
                                   f"{c['log']} ends with:\n{tail(c['log'])}")
            time.sleep(0.05)

    def _stop_client(self, c: dict) -> None:
        pid = c.get("pid")
        if pid:
            popen = self._popen.pop(pid, None)
            stop_pid(pid, c.get("starttime"), popen=popen)
            if pid_alive(pid):
                self._unstick(c, pid, popen, "did not exit after SIGTERM and SIGKILL")
            c["pid"] = None
        if mount_fstype(c["mountpoint"]) is not None:
            unmount(c["mountpoint"])

    def _unstick(self, c: dict, pid: int, popen: Optional[subprocess.Popen], why: str) -> None:
        """Abort the FUSE connection of a client that cannot exit, and note the anomaly."""
        msg = f"node{c['index']} (pid {pid}) {why}"
        stuck = kernel_stacks(pid)
        if stuck:
            msg += f"; threads blocked in the kernel: {stuck}"
        conn = c.get("fuse_conn")
        if conn is not None and abort_fuse_connection(conn):
            msg += f"; aborted FUSE connection {conn}"
        deadline = time.monotonic() + 10
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if popen is not None:
            try:
                popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        if pid_alive(pid):
            msg += "; still running"
        self.anomalies.append(msg)
        self.progress("warning: " + msg)

    def stop_client(self, i: int) -> None:
        """SIGTERM (then SIGKILL) client ``i`` and make sure it is unmounted."""
        self._stop_client(self.clients[i])
        self.save()

    def kill_client(self, i: int, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to client ``i`` and wait for it to exit (its mount may stay, dead)."""
        c = self.clients[i]
        if not c.get("pid") or not pid_alive(c["pid"]):
            raise ClusterError(f"client {i} is not running")
        pid = c["pid"]
        os.kill(pid, sig)
        try:
            self._wait_exit(pid, 10)
        except ClusterError:
            self._unstick(c, pid, self._popen.pop(pid, None), f"did not exit within 10s of signal {sig}")
        c["pid"] = None
        self.save()

    def abort_client(self, i: int) -> None:
        """Abort node ``i``'s FUSE connection (fusectl) and SIGKILL it: for a wedged daemon."""
        c = self.clients[i]
        if c.get("fuse_conn") is not None:
            abort_fuse_connection(c["fuse_conn"])
        pid = c.get("pid")
        if pid and pid_matches(pid, c.get("starttime")):
            os.kill(pid, signal.SIGKILL)
            try:
                self._wait_exit(pid, 10)
            except ClusterError:
                self.anomalies.append(f"node{i} (pid {pid}) still running after abort and SIGKILL")
        c["pid"] = None
        self._stop_client(c)
        self.save()

    def restart_client(self, i: int) -> None:
        """Stop client ``i`` (if running), lazily unmount a dead mount, start it again."""
        c = self.clients[i]
        if c.get("pid") and pid_alive(c["pid"]):
            self._stop_client(c)
        if mount_fstype(c["mountpoint"]) is not None and not unmount(c["mountpoint"], lazy_only=True):
            raise ClusterError(f"cannot unmount {c['mountpoint']}")
        self.start_client(i)

    def client_alive(self, i: int) -> bool:
        return pid_alive(self.clients[i].get("pid"))

    def pid(self, i: int) -> Optional[int]:
        return self.clients[i].get("pid")

    # ---- stats

    def stats(self, i: Optional[int] = None, timeout: float = 10.0) -> dict:
        """Ask node ``i`` (or the storage service if None) for a stats dump (SIGUSR1)."""
        entry = self.storage if i is None else self.clients[i]
        return self._dump_stats(entry, "storage" if i is None else f"node{i}", timeout)

    def lease_manager_stats(self, timeout: float = 10.0) -> dict:
        """The active lease manager's stats dump (SIGUSR1); {} if none answers as active."""
        for m in getattr(self, "lease_managers", []):
            if not m.get("pid") or not pid_alive(m["pid"]):
                continue
            try:
                j = self._dump_stats(m, f"leasemgr{m['index']}", timeout)
            except ClusterError:
                continue
            if j.get("lease", {}).get("active"):
                return j
        return {}

    def _dump_stats(self, entry: dict, what: str, timeout: float) -> dict:
        path, pid = Path(entry["stats"]), entry.get("pid")
        if not pid or not pid_alive(pid):
            raise ClusterError(f"{what} is not running")
        try:
            before = path.stat().st_mtime_ns, path.read_bytes()
        except FileNotFoundError:
            before = None
        os.kill(pid, signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                now = path.stat().st_mtime_ns, path.read_bytes()
                if now != before:
                    return json.loads(now[1])
            except (FileNotFoundError, json.JSONDecodeError):
                pass
            time.sleep(0.02)
        raise ClusterError(f"no stats dump in {path} within {timeout}s after SIGUSR1")

    # ---- helpers

    def _spawn(self, cmd: list[str], log: Path) -> subprocess.Popen:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as f:
            f.write(f"==== {time.strftime('%H:%M:%S')} start: {' '.join(cmd)}\n".encode())
            f.flush()
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                    start_new_session=True, close_fds=True)
        self._popen[proc.pid] = proc
        return proc

    def _wait_exit(self, pid: int, timeout: float) -> None:
        proc = self._popen.get(pid)
        if proc is not None:
            try:
                proc.wait(timeout=timeout)
                self._popen.pop(pid, None)
                return
            except subprocess.TimeoutExpired:
                raise ClusterError(f"pid {pid} did not exit within {timeout}s") from None
        deadline = time.monotonic() + timeout
        while pid_alive(pid):
            if time.monotonic() > deadline:
                raise ClusterError(f"pid {pid} did not exit within {timeout}s")
            time.sleep(0.05)

    def describe(self) -> str:
        """Human-readable status, one line per component."""
        lines = [f"cluster {self.rundir}: mode={self.mode} nodes={self.nodes} "
                 f"net={self.net_used} ({self.net_reason}) rtt_us={self.rtt_us} status={self.status}"]
        s = self.storage
        lines.append(f"  storage  pid={s.get('pid')} alive={pid_alive(s.get('pid'))} "
                     f"address={s.get('address')} log={s.get('log')}")
        for c in self.clients:
            lines.append(f"  node{c['index']}    pid={c.get('pid')} alive={pid_alive(c.get('pid'))} "
                         f"mounted={mount_fstype(c['mountpoint'])} {c['mountpoint']}")
        for m in self.lease_managers:
            lines.append(f"  leasemgr{m['index']} pid={m.get('pid')} alive={pid_alive(m.get('pid'))} "
                         f"address={m.get('address')} log={m.get('log')}")
        if self.etcd:
            e = self.etcd
            lines.append(f"  etcd     pid={e.get('pid')} alive={pid_alive(e.get('pid'))} "
                         f"endpoint={e.get('endpoint')} log={e.get('log')}")
        if self.netns:
            lines.append("  netns    " + " ".join(self.netns))
        return "\n".join(lines)


# --------------------------------------------------------------------------
# machine-wide sweep


def pids_named(names: Iterable[str]) -> list[tuple[int, str]]:
    """(pid, name) of every running process whose program is one of ``names``."""
    names = set(names)
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        cmd = pid_cmdline(pid)
        if not cmd or not pid_alive(pid):
            continue
        base = os.path.basename(cmd[0])
        if base in names:
            out.append((pid, base))
    return out


def dfuse_pids() -> list[tuple[int, str]]:
    """(pid, name) of every running DFUSE daemon on the machine."""
    return pids_named(DAEMON_NAMES)


def tool_started(cmd: Sequence[str]) -> bool:
    """True if a process with command line ``cmd`` was started by this tool: one
    of its path arguments lies in a run directory (one with a cluster.json)."""
    for arg in cmd[1:]:
        arg = arg.split("=", 1)[-1]
        if not arg.startswith("/"):
            continue
        for parent in list(Path(arg).parents)[:3]:
            if parent != Path("/") and (parent / "cluster.json").is_file():
                return True
    return False


def service_pids() -> list[tuple[int, str]]:
    """(pid, name) of every running lease manager and etcd (started by anyone)."""
    return pids_named(SERVICE_NAMES)


def sweep_all(progress: Callable[[str], None] = lambda m: None) -> int:
    """Unmount every fuse.dfuse-* mount, stop every DFUSE daemon, delete dfuse-* netns.

    Returns the number of things removed.
    """
    n = 0
    pids = dfuse_pids()
    conns = [d[1] for d in (mount_device(mp) for mp in dfuse_mounts()) if d]
    for pid, name in pids:
        if name != "dfuse-storage":
            progress(f"stopping {name} pid {pid}")
            stop_pid(pid)
            n += 1
    if any(pid_alive(pid) for pid, name in pids if name != "dfuse-storage"):
        for conn in conns:
            progress(f"aborting FUSE connection {conn} (a daemon is stuck)")
            abort_fuse_connection(conn)
    for mp in dfuse_mounts():
        progress(f"unmounting {mp}")
        unmount(mp)
        n += 1
    for pid, name in pids:
        if name == "dfuse-storage":
            progress(f"stopping {name} pid {pid}")
            stop_pid(pid)
            n += 1
    # Lease managers before etcd, so an active one can resign cleanly.
    for pid, name in sorted(service_pids(), key=lambda p: p[1] == "etcd"):
        if tool_started(pid_cmdline(pid)):
            progress(f"stopping {name} pid {pid}")
            stop_pid(pid)
            n += 1
    for ns in list_netns():
        if ns.startswith(NETNS_PREFIX):
            progress(f"deleting netns {ns}")
            delete_netns(ns)
            n += 1
    return n


def _main() -> int:  # pragma: no cover - convenience
    print(__doc__)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
