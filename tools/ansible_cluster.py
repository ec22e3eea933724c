"""A mode's DFUSE cluster on the hosts of an Ansible inventory: the runner's cluster backend.

tools/dfuse-reproduce --inventory FILE brings each mode's cluster up and down
with the playbooks in ansible/ and runs the workloads on the client hosts
over ssh, with the same node interface as the runner's local cluster
(dfuse-reproduce's LocalCluster): ``mount``, ``export_dir``, ``tool``,
``fio_job``, ``start_on``, ``on_storage``, ``stats`` and ``start_delay``; and, as the
hosts share no clock, ``on_client`` and ``clock_offset`` for the checker::

    plan = Inventory("ansible/inventory/lab.yml", progress=print)
    plan.check("writethrough")                # check.yml: before anything starts
    plan.playbook("deploy.yml")
    c = AnsibleCluster(plan, mode="writethrough", nodes=8)
    c.up()                                    # up.yml: storage, managers, etcd, c01..c08
    p = c.start_on(0, ["fio", ...], stdout_path, log_path, env, at=start_time)
    c.stats(0)                                # the client's stats JSON
    c.down()                                  # down.yml: every mode, every host
    plan.teardown()                           # teardown.yml: nothing left on any host

Each mode's cluster has its own ports, export and mounts, so all of them are
up at once and the runner takes turns between them as a local run does.
Paths on a host are the roles' (ansible/roles/dfuse_defaults), as the
inventory and group_vars set them: layout.yml reports them per host and mode,
by default binaries in /opt/dfuse/bin, workloads in /opt/dfuse/workloads, a
mode's mount at /mnt/dfuse-<mode>, its export at /var/lib/dfuse/<mode>/export,
stats in /run/dfuse, logs in /var/log/dfuse, all under the host's ``dfuse_root``.
"""

from __future__ import annotations

import json
import os
import select
import shlex
import subprocess
import time
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

from dfuse_cluster import ClusterError, LOG_TAIL_BYTES, REPO_ROOT

ANSIBLE_DIR = REPO_ROOT / "ansible"

# Starts argv[2:] at wall-clock time argv[1] on a host: every client's
# workload begins together, whatever ssh took to reach each host.
_AT = ("import os,sys,time; time.sleep(max(0.0, float(sys.argv[1]) - time.time())); "
       "os.execvp(sys.argv[2], sys.argv[2:])")


# Separates the logs in collect_logs' one ssh answer per host.
_LOG_MARK = "\n=== dfuse log: "

# Answers every line on stdin with the host's CLOCK_REALTIME in ns
# (Inventory.clock_offset brackets each answer with this machine's clock).
_CLOCK_ECHO = "import sys,time\nfor _ in sys.stdin: print(time.time_ns(), flush=True)"


def _run(cmd: Sequence[str], timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, **kw)


class Inventory:
    """An inventory's hosts and how to reach them, and the playbooks run on all of them."""

    def __init__(self, path: str | os.PathLike, progress: Callable[[str], None] = print,
                 extra_vars: Optional[Mapping[str, str]] = None) -> None:
        self.path = Path(path).resolve()
        if not self.path.is_file():
            raise ClusterError(f"inventory {self.path} does not exist")
        self.progress = progress
        self.extra_vars = dict(extra_vars or {})
        self.up = False  # whether some mode's cluster may be up
        self._layouts: dict[str, dict[str, dict[str, str]]] = {}  # mode -> host -> paths
        r = _run(["ansible-inventory", "-i", str(self.path), "--list"], cwd=ANSIBLE_DIR,
                 env=self._env())
        if r.returncode != 0:
            raise ClusterError(f"cannot read inventory {self.path}: {r.stderr.strip()[-500:]}")
        data = json.loads(r.stdout)
        self.hostvars: dict[str, dict] = data.get("_meta", {}).get("hostvars", {})
        self.groups: dict[str, list[str]] = {}

        def hosts_of(group: str) -> list[str]:
            g = data.get(group, {})
            out = list(g.get("hosts", []))
            for child in g.get("children", []):
                out += [h for h in hosts_of(child) if h not in out]
            return out

        for g in ("storage", "lease_managers", "etcd", "clients"):
            self.groups[g] = hosts_of(g)
        if len(self.groups["storage"]) != 1 or not self.groups["clients"]:
            raise ClusterError(
                f"inventory {self.path} needs exactly one host in group storage and at least one "
                f"in clients (found {len(self.groups['storage'])} and "
                f"{len(self.groups['clients'])})")

    def _env(self) -> dict:
        return dict(os.environ, ANSIBLE_CONFIG=str(ANSIBLE_DIR / "ansible.cfg"),
                    ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")

    # ---- playbooks

    def playbook(self, name: str, *args: str, timeout: float = 3600,
                 callback: Optional[str] = None) -> str:
        """Runs ansible/<name> on this inventory; its output (in ``callback``'s format if
        given), or ClusterError naming the host."""
        cmd = ["ansible-playbook", "-i", str(self.path), name, *args]
        for k, v in self.extra_vars.items():
            cmd += ["-e", f"{k}={v}"]
        env = self._env()
        if callback:
            env["ANSIBLE_STDOUT_CALLBACK"] = callback
        r = _run(cmd, timeout=timeout, cwd=ANSIBLE_DIR, env=env)
        if r.returncode != 0:
            raise ClusterError(f"{name} failed: {failure_summary(r.stdout + r.stderr)}")
        return r.stdout

    def layout(self, mode: str) -> dict[str, dict[str, str]]:
        """Each host's paths for ``mode`` as the roles resolve them from this inventory
        (layout.yml): bin_dir, bench_dir, mount_point, export_dir, run_dir, log_dir."""
        if mode not in self._layouts:
            out = self.playbook("layout.yml", "-e", f"dfuse_mode={mode}", timeout=300,
                                callback="ansible.posix.json")
            try:
                tasks = json.loads(out)["plays"][0]["tasks"]
                report = next(t for t in tasks if t["task"]["name"] == "Report the paths")
                self._layouts[mode] = {h: r["msg"] for h, r in report["hosts"].items()}
            except (ValueError, LookupError, StopIteration, TypeError) as e:
                raise ClusterError(f"layout.yml: unexpected output ({e!r}): {out[-300:]}") from None
        return self._layouts[mode]

    def check(self, mode: str) -> None:
        self.playbook("check.yml", "-e", f"dfuse_mode={mode}")

    def teardown(self) -> None:
        self.progress("cluster: tearing down")
        self.playbook("teardown.yml")

    # ---- hosts

    def address(self, host: str) -> str:
        return str(self.hostvars.get(host, {}).get("ansible_host", host))

    def ssh_command(self, host: str, cmd: Sequence[str]) -> list[str]:
        """ssh to ``host`` as Ansible does (user, key and options from the inventory)."""
        hv = self.hostvars.get(host, {})
        out = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
        if hv.get("ansible_ssh_private_key_file"):
            out += ["-i", str(hv["ansible_ssh_private_key_file"])]
        if hv.get("ansible_port"):
            out += ["-p", str(hv["ansible_port"])]
        out += shlex.split(str(hv.get("ansible_ssh_common_args", "")))
        user = hv.get("ansible_user")
        out += [f"{user}@{self.address(host)}" if user else self.address(host)]
        # ssh hands the remote shell one string: quote the words once.
        return out + ["--", shlex.join(cmd)]

    def on(self, host: str, cmd: Sequence[str], timeout: float = 120) -> str:
        r = _run(self.ssh_command(host, cmd), timeout=timeout)
        if r.returncode != 0:
            raise ClusterError(f"{host}: {shlex.join(cmd)} exited {r.returncode}: "
                               f"{r.stderr.strip()[-500:]}")
        return r.stdout

    def clock_offset(self, host: str, samples: int = 50) -> tuple[int, int]:
        """Bounds in ns on ``host``'s clock minus this machine's, from ``samples`` round
        trips over one ssh session. An answer r, asked at t0 and received at t1 on this
        machine's clock, was read between the two, so the offset lies within
        [r - t1, r - t0]; every sample holds it, so their intersection does too. Its width
        is the fastest round trip, not a guess. Raises ClusterError if the samples do not
        overlap (a clock stepped while measuring)."""
        cmd = self.ssh_command(host, ["python3", "-u", "-c", _CLOCK_ECHO])
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        lo, hi = None, None
        try:
            for _ in range(samples):
                t0 = time.time_ns()
                try:
                    proc.stdin.write("\n")
                    proc.stdin.flush()
                except OSError:  # ssh is gone: its stderr says why
                    answer = ""
                else:
                    # One line asked, one answered: nothing is buffered ahead of select.
                    ready, _, _ = select.select([proc.stdout], [], [], 20)
                    answer = proc.stdout.readline() if ready else ""
                t1 = time.time_ns()
                if not answer.strip().isdigit():
                    proc.kill()
                    raise ClusterError(f"{host}: no clock reading over ssh within 20 s "
                                       f"({proc.stderr.read().strip()[-300:] or 'no answer'})")
                r = int(answer)
                lo = r - t1 if lo is None else max(lo, r - t1)
                hi = r - t0 if hi is None else min(hi, r - t0)
        finally:
            try:
                proc.stdin.close()
            except OSError:
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if lo > hi:
            raise ClusterError(f"{host}: its clock readings disagree with each other "
                               "(a clock stepped while measuring)")
        return lo, hi

    def describe(self) -> dict:
        """Hosts, groups, each host's kernel, and the measured client-to-storage round trip."""
        hosts = []
        for h in sorted({h for g in self.groups.values() for h in g}):
            hosts.append({"host": h, "address": self.address(h),
                          "groups": [g for g, members in self.groups.items() if h in members],
                          "kernel": self.on(h, ["uname", "-r"]).strip()})
        storage = self.groups["storage"][0]
        # A TCP connect to the storage host's sshd takes one round trip.
        probe = ("import socket,sys,time\nbest=1e9\nfor _ in range(20):\n"
                 " t=time.perf_counter(); s=socket.create_connection((sys.argv[1], 22), 5)\n"
                 " best=min(best, time.perf_counter()-t); s.close()\nprint(best*1e6)")
        rtt = float(self.on(self.groups["clients"][0],
                            ["python3", "-c", probe, self.address(storage)]).strip())
        return {"inventory": str(self.path), "hosts": hosts,
                "rtt_us_client_to_storage": round(rtt, 1)}


def failure_summary(output: str) -> str:
    """The lines of an ansible-playbook output that say which host failed and why."""
    keep = [line.strip() for line in output.splitlines()
            if line.startswith(("fatal:", "failed:", "ERROR!")) or "UNREACHABLE" in line
            or '"msg":' in line]
    text = " | ".join(keep) if keep else output.strip()[-1500:]
    return text[:3000]


class AnsibleCluster:
    """One mode's cluster: the storage host, the lease managers and the first ``nodes`` clients."""

    def __init__(self, inventory: Inventory, mode: str, nodes: int,
                 client_args: Sequence[str] = (), manager_args: Sequence[str] = ()) -> None:
        clients = inventory.groups["clients"]
        if nodes > len(clients):
            raise ClusterError(f"{nodes} client nodes asked for, but the inventory has "
                               f"{len(clients)} in group clients")
        self.inv = inventory
        self.mode = mode
        self.nodes = nodes
        self.hosts = clients[:nodes]
        self.client_args = list(client_args)  # the client role's dfuse_client_extra_args
        # The lease_manager role's dfuse_lease_manager_extra_args.
        self.manager_args = list(manager_args)
        self.storage_host = inventory.groups["storage"][0]
        self.net_used = "cluster"
        # Workloads of one point start together this long after they are started
        # (``start_on``'s ``at``): time enough for ssh to reach every host first.
        self.start_delay: Optional[float] = 3.0

    def up(self) -> None:
        limit = ":".join(["storage", "lease_managers", "etcd", *self.hosts])
        self.inv.progress(f"cluster: {self.mode} up on {', '.join(self.hosts)}")
        self.inv.up = True
        extra_vars = {}
        if self.client_args:
            extra_vars["dfuse_client_extra_args"] = self.client_args
        if self.manager_args:
            extra_vars["dfuse_lease_manager_extra_args"] = self.manager_args
        extra = ["-e", json.dumps(extra_vars)] if extra_vars else []
        self.inv.playbook("up.yml", "-e", f"dfuse_mode={self.mode}", "--limit", limit, *extra)

    def down(self) -> None:
        # down.yml takes every mode down: once for all the modes' clusters.
        if self.inv.up:
            self.inv.up = False
            self.inv.playbook("down.yml")

    # ---- paths on the hosts (as the roles resolve them: Inventory.layout)

    def _path(self, host: str, name: str) -> str:
        return self.inv.layout(self.mode)[host][name]

    def mount(self, i: int) -> str:
        return self._path(self.hosts[i], "mount_point")

    @property
    def export_dir(self) -> str:
        return self._path(self.storage_host, "export_dir")

    def _host(self, node: Optional[int]) -> str:
        return self.storage_host if node is None else self.hosts[node]

    def tool(self, name: str, node: Optional[int] = None) -> str:
        """dfuse-``name`` on client ``node`` (the storage host if None)."""
        return f"{self._path(self._host(node), 'bin_dir')}/dfuse-{name}"

    def fio_job(self, pattern: str, node: int) -> str:
        return f"{self._path(self._host(node), 'bench_dir')}/fio/{pattern}.fio"

    # ---- running things

    def start_on(self, i: int, cmd: Sequence[str], stdout_path: Path, log_path: Path,
                 env: Optional[Mapping[str, str]] = None, at: Optional[float] = None
                 ) -> subprocess.Popen:
        """Starts ``cmd`` on client ``i`` (at wall-clock time ``at``); its stdout and
        stderr come back into the local files."""
        remote = list(cmd)
        if at is not None:
            remote = ["python3", "-c", _AT, f"{at:.3f}"] + remote
        if env:
            remote = ["env"] + [f"{k}={v}" for k, v in env.items()] + remote
        with open(stdout_path, "w") as out, open(log_path, "w") as err:
            return subprocess.Popen(self.inv.ssh_command(self.hosts[i], remote),
                                    stdout=out, stderr=err, stdin=subprocess.DEVNULL)

    def on_storage(self, cmd: Sequence[str], timeout: float = 3600) -> str:
        return self.inv.on(self.storage_host, cmd, timeout=timeout)

    def on_client(self, i: int, cmd: Sequence[str], timeout: float = 600) -> str:
        return self.inv.on(self.hosts[i], cmd, timeout=timeout)

    def collect_logs(self, dest: Path, tail_bytes: int = LOG_TAIL_BYTES) -> None:
        """Copies the end of every log of this mode's daemons (and etcd's) from each of
        its hosts into ``dest``/<host>-<log>, for a failed point; a host that cannot be
        reached gets a note saying why instead."""
        dest.mkdir(parents=True, exist_ok=True)
        hosts = [self.storage_host, *self.inv.groups["lease_managers"],
                 *self.inv.groups["etcd"], *self.hosts]
        for host in dict.fromkeys(hosts):
            logdir = self._path(host, "log_dir")
            # One ssh per host: each log's name on a line of its own, then its tail;
            # last the kernel's messages (dfuse.ko reports failed lease upcalls there).
            script = (f"if cd {shlex.quote(logdir)} 2>/dev/null; then "
                      f"for f in *@{shlex.quote(self.mode)}.log dfuse-etcd.log; do "
                      f'[ -f "$f" ] || continue; printf "{_LOG_MARK}%s\\n" "$f"; '
                      f'tail -c {int(tail_bytes)} "$f"; done; fi; '
                      f'printf "{_LOG_MARK}dmesg.txt\\n"; dmesg 2>&1 | tail -n 300')
            try:
                out = self.inv.on(host, ["sh", "-c", script], timeout=60)
            except (ClusterError, subprocess.TimeoutExpired) as e:
                (dest / f"{host}-unreachable.txt").write_text(f"{e}\n")
                continue
            for chunk in out.split(_LOG_MARK)[1:]:
                name, _, text = chunk.partition("\n")
                (dest / f"{host}-{Path(name).name}").write_text(text)

    def clock_offset(self, i: int) -> tuple[int, int]:
        """Bounds in ns on client ``i``'s clock minus this machine's (Inventory.clock_offset)."""
        return self.inv.clock_offset(self.hosts[i])

    def stats(self, i: int) -> dict:
        """Client ``i``'s stats (the daemon rewrites them every second)."""
        path = f"{self._path(self.hosts[i], 'run_dir')}/client-{self.mode}-stats.json"
        deadline = time.monotonic() + 10
        while True:
            try:
                return json.loads(self.inv.on(self.hosts[i], ["cat", path]))
            except (ClusterError, json.JSONDecodeError) as e:
                if time.monotonic() > deadline:
                    raise ClusterError(f"no stats from {self.hosts[i]}: {e}") from None
                time.sleep(0.5)
