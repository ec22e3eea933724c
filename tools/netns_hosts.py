"""Hosts made of network namespaces, for running the Ansible cluster path on one machine.

Each host is a network namespace on a private bridge, with its own address,
its own sshd (listening only on that address, in a mount namespace of its
own) and its own directory, which the inventory gives the roles as
``dfuse_root``. Ansible then reaches every host over ssh exactly as it would
on a real cluster; the control machine is one more namespace on the bridge::

    from netns_hosts import NetnsHosts
    with NetnsHosts("/tmp/hosts", {"storage": ["st01"], "lease_managers": ["lm01"],
                                   "etcd": ["lm01"], "clients": ["c01", "c02"]}) as hosts:
        hosts.run_control(["ansible-playbook", "-i", hosts.inventory, "deploy.yml"])
    # every namespace, process and file it made is gone here, also on error

Only addresses in ``10.123.0.0/16`` inside namespaces made here are used.
Layout of ROOT::

    ssh/id_ed25519{,.pub}  ssh/host_ed25519  ssh/known_hosts  ssh/authorized_keys
    hosts/<name>/          a host's dfuse_root: everything the roles put on it
    sshd/<name>/           its sshd's config, pid file, log and the bashrc its
                           sessions read instead of this machine's (see below)
    ansible-tmp/           Ansible's temporary files on the hosts
    inventory.yml          the Ansible inventory of these hosts
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Mapping, Optional, Sequence

NETNS_DIR = Path("/run/netns")
SUBNET = "10.123"
SSHD = "/usr/sbin/sshd"
GROUPS = ("storage", "lease_managers", "etcd", "clients")
# What a namespace host's login shell reads as ~/.bashrc: a fresh node's
# (nothing), not this machine's. Debian's bash reads ~/.bashrc for every
# command sshd runs, so a control machine's development set-up there (a
# pyenv init costs about two seconds) would be paid by every Ansible task
# on every host, which no real cluster node pays.
HOST_BASHRC = "# A namespace host's ~/.bashrc (tools/netns_hosts.py): a fresh node's.\n"


class HostsError(RuntimeError):
    pass


def _run(cmd: Sequence[str], check: bool = True, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(list(cmd), capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise HostsError(f"{' '.join(cmd)}: {(r.stderr or r.stdout).strip() or r.returncode}")
    return r


def netns_pids(ns: str) -> list[int]:
    r = _run(["ip", "netns", "pids", ns], check=False)
    return [int(p) for p in r.stdout.split()] if r.returncode == 0 else []


class NetnsHosts:
    """Namespace hosts with sshd, from ``groups`` (group name -> host names)."""

    def __init__(self, root: str | Path, groups: Mapping[str, Sequence[str]],
                 host_vars: Optional[Mapping[str, object]] = None, progress=None) -> None:
        self.root = Path(root).resolve()
        self.groups = {g: list(groups.get(g, [])) for g in GROUPS}
        unknown = set(groups) - set(GROUPS)
        if unknown:
            raise HostsError(f"unknown groups {sorted(unknown)}: use {', '.join(GROUPS)}")
        names: list[str] = []
        for g in GROUPS:
            names += [h for h in self.groups[g] if h not in names]
        if not names:
            raise HostsError("no hosts")
        if len(names) > 250:
            raise HostsError(f"{len(names)} hosts: at most 250")
        self.names = names
        self.address = {h: f"{SUBNET}.0.{i + 2}" for i, h in enumerate(names)}
        self.control_address = f"{SUBNET}.0.1"
        self.extra_vars = dict(host_vars or {})
        tag = hashlib.sha1(str(self.root).encode()).hexdigest()[:5]
        self.prefix = f"dfh{tag}-"  # interface names are at most 15 bytes
        self.hub = self.prefix + "hub"
        self.control = self.prefix + "ctl"
        self.netns: list[str] = []
        self.sshd: dict[str, subprocess.Popen] = {}
        self.inventory = self.root / "inventory.yml"
        self.progress = progress or (lambda msg: None)
        self._made_run_sshd = False

    # ---- lifecycle

    def __enter__(self) -> "NetnsHosts":
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.down()

    def ns(self, host: str) -> str:
        return self.prefix + host

    def up(self) -> None:
        if self.root.exists():
            raise HostsError(f"{self.root} exists: remove it or pick another directory")
        if not Path(SSHD).exists():
            raise HostsError(f"{SSHD} is missing: apt-get install openssh-server")
        (self.root / "ssh").mkdir(parents=True)
        self._keys()
        self._network()
        for h in self.names:
            self._start_sshd(h)
        for h in self.names:
            self._wait_ssh(h)
            self._drop_copied_mounts(h)
        self._write_inventory()
        self.progress(f"{len(self.names)} namespace hosts up: " +
                      ", ".join(f"{h} {self.address[h]}" for h in self.names))

    def down(self) -> None:
        """Kill every process in the namespaces made here, delete them and the files."""
        for ns in reversed(self.netns):
            for sig in (signal.SIGTERM, signal.SIGKILL):
                pids = netns_pids(ns)
                for pid in pids:
                    try:
                        os.kill(pid, sig)
                    except ProcessLookupError:
                        pass
                deadline = time.monotonic() + 10
                while pids and netns_pids(ns) and time.monotonic() < deadline:
                    time.sleep(0.1)
        for p in self.sshd.values():
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        self.sshd.clear()
        for ns in reversed(self.netns):
            _run(["ip", "netns", "del", ns], check=False)
        self.netns.clear()
        if self._made_run_sshd:
            shutil.rmtree("/run/sshd", ignore_errors=True)
        # A FUSE mount left in a host's mount namespace is gone with its
        # last process; the directory can go now.
        shutil.rmtree(self.root, ignore_errors=True)

    # ---- pieces

    def _keys(self) -> None:
        ssh = self.root / "ssh"
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "dfuse-control",
              "-f", str(ssh / "id_ed25519")])
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "dfuse-host",
              "-f", str(ssh / "host_ed25519")])
        (ssh / "authorized_keys").write_text((ssh / "id_ed25519.pub").read_text())
        host_key = (ssh / "host_ed25519.pub").read_text().split()
        (ssh / "known_hosts").write_text("".join(
            f"{self.address[h]} {host_key[0]} {host_key[1]}\n" for h in self.names))
        for f in ssh.iterdir():
            f.chmod(0o600)

    def _ip(self, *args: str) -> None:
        _run(["ip", *args])

    def _add_ns(self, ns: str) -> None:
        if (NETNS_DIR / ns).exists():
            raise HostsError(f"network namespace {ns} exists (left by an earlier run?): "
                             f"ip netns del {ns}")
        self._ip("netns", "add", ns)
        self.netns.append(ns)
        self._ip("-n", ns, "link", "set", "lo", "up")

    def _network(self) -> None:
        self._add_ns(self.hub)
        self._ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        self._ip("-n", self.hub, "link", "set", "br0", "up")
        attach = [(self.control, self.control_address)] + [(self.ns(h), self.address[h])
                                                           for h in self.names]
        for i, (ns, addr) in enumerate(attach):
            self._add_ns(ns)
            port = f"p{i}"
            self._ip("link", "add", port, "netns", self.hub, "type", "veth",
                     "peer", "name", "eth0", "netns", ns)
            self._ip("-n", self.hub, "link", "set", port, "master", "br0")
            self._ip("-n", self.hub, "link", "set", port, "up")
            self._ip("-n", ns, "addr", "add", f"{addr}/16", "dev", "eth0")
            self._ip("-n", ns, "link", "set", "eth0", "up")

    def host_dir(self, host: str) -> Path:
        return self.root / "hosts" / host

    def _start_sshd(self, host: str) -> None:
        if not Path("/run/sshd").exists():  # sshd's privilege separation directory
            Path("/run/sshd").mkdir(mode=0o755)
            self._made_run_sshd = True
        d = self.root / "sshd" / host
        d.mkdir(parents=True)
        ssh = self.root / "ssh"
        cfg = d / "sshd_config"
        cfg.write_text(
            f"ListenAddress {self.address[host]}:22\n"
            f"HostKey {ssh / 'host_ed25519'}\n"
            f"AuthorizedKeysFile {ssh / 'authorized_keys'}\n"
            f"PidFile {d / 'sshd.pid'}\n"
            "PermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UsePAM no\n"
            "StrictModes no\n"
            "MaxStartups 100:30:200\n"
            "MaxSessions 100\n"
            "Subsystem sftp internal-sftp\n"
            "AcceptEnv LANG LC_*\n")
        log = open(d / "sshd.log", "wb")
        # Its own mount namespace: what a session mounts (a client's FUSE
        # mount) is seen on this host only, as on a separate machine.
        cmd = [SSHD, "-D", "-e", "-f", str(cfg)]
        bashrc = Path(pwd.getpwuid(os.getuid()).pw_dir) / ".bashrc"
        if bashrc.is_file():
            (d / "bashrc").write_text(HOST_BASHRC)
            # Bound in the host's own mount namespace only; sh execs sshd,
            # so the Popen's pid is still sshd's.
            cmd = ["sh", "-c", 'mount --bind "$1" "$2" && shift 2 && exec "$@"', "sh",
                   str(d / "bashrc"), str(bashrc), *cmd]
        self.sshd[host] = subprocess.Popen(
            ["ip", "netns", "exec", self.ns(host), "unshare", "--mount", "--propagation",
             "private", "--", *cmd],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()

    def _wait_ssh(self, host: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.sshd[host].poll() is not None:
                log = (self.root / "sshd" / host / "sshd.log").read_text()
                raise HostsError(f"sshd of {host} exited: {log.strip()[-500:]}")
            r = self.run_control(self.ssh_command(host, ["true"]), check=False, timeout=10)
            if r.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise HostsError(f"no ssh to {host} ({self.address[host]}) within {timeout}s: "
                                 f"{r.stderr.strip()}")
            time.sleep(0.2)

    def ssh_options(self) -> list[str]:
        ssh = self.root / "ssh"
        return ["-o", f"UserKnownHostsFile={ssh / 'known_hosts'}", "-o", "StrictHostKeyChecking=yes",
                "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-i", str(ssh / "id_ed25519")]

    def ssh_command(self, host: str, cmd: Sequence[str]) -> list[str]:
        # ssh hands the remote shell one string: quote the words once.
        return ["ssh", *self.ssh_options(), f"root@{self.address[host]}", "--", shlex.join(cmd)]

    def _write_inventory(self) -> None:
        """The inventory Ansible gets: groups, addresses, per-host roots, ssh settings."""
        lines = ["# Made by tools/netns_hosts.py: namespace hosts on one machine.", "all:",
                 "  vars:", "    ansible_user: root",
                 f"    ansible_ssh_private_key_file: {self.root / 'ssh' / 'id_ed25519'}",
                 "    ansible_ssh_common_args: >-",
                 f"      -o UserKnownHostsFile={self.root / 'ssh' / 'known_hosts'}"
                 " -o StrictHostKeyChecking=yes",
                 # Ansible's temporary files, also of tasks delegated to the
                 # control machine: not in /root (read-only in the VM
                 # testbed) nor in a host's root (teardown removes it).
                 f"    ansible_remote_tmp: {self.root / 'ansible-tmp'}",
                 "    dfuse_service_manager: direct",
                 "    dfuse_install_packages: false"]
        for k, v in self.extra_vars.items():
            # A JSON scalar is a YAML scalar, quotes and all.
            lines.append(f"    {k}: {json.dumps(v)}")
        lines.append("  children:")
        for g in GROUPS:
            if not self.groups[g]:
                continue
            lines += [f"    {g}:", "      hosts:"]
            for h in self.groups[g]:
                lines.append(f"        {h}: {{ansible_host: {self.address[h]}, "
                             f"dfuse_root: {json.dumps(str(self.host_dir(h)))}}}")
        self.inventory.write_text("\n".join(lines) + "\n")

    # ---- running things

    def run_control(self, cmd: Sequence[str], check: bool = True, timeout: Optional[float] = None,
                    env: Optional[Mapping[str, str]] = None, capture: bool = True
                    ) -> subprocess.CompletedProcess:
        """Runs ``cmd`` on the control machine (the control namespace)."""
        full = ["ip", "netns", "exec", self.control, *cmd]
        r = subprocess.run(full, capture_output=capture, text=True, timeout=timeout,
                           env={**os.environ, **(env or {})})
        if check and r.returncode != 0:
            out = (r.stdout or "")[-3000:] + (r.stderr or "")[-2000:]
            raise HostsError(f"{' '.join(cmd)} exited {r.returncode}:\n{out}")
        return r

    def on_host(self, host: str, cmd: Sequence[str], check: bool = True
                ) -> subprocess.CompletedProcess:
        """Runs ``cmd`` on ``host`` over ssh."""
        return self.run_control(self.ssh_command(host, cmd), check=check, timeout=60)

    def _fuse_mounts(self, host: str) -> list[tuple[str, str]]:
        """(target, fstype) of every FUSE mount in ``host``'s mount namespace."""
        # `ip netns exec` execs unshare, which execs sshd: the Popen's pid is sshd's.
        found = []
        with open(f"/proc/{self.sshd[host].pid}/mountinfo") as f:
            for line in f:
                fields, _, right = line.partition(" - ")
                fields = fields.split()
                fstype = right.split()[0] if right else ""
                if len(fields) >= 5 and fstype.startswith(("fuse", "dfuse")):
                    target = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
                    found.append((target, fstype))
        return found

    def _drop_copied_mounts(self, host: str) -> None:
        """Detach the FUSE mounts the host's namespace copied from this machine.

        A new mount namespace starts as a copy of its parent's, so FUSE mounts
        that other programs had up at that moment (another test's cluster) would
        show on every host, and a private copy would also keep that file system
        alive after its owner unmounts it. A fresh machine has none of them.
        """
        for target, _ in self._fuse_mounts(host):
            _run(["nsenter", "-t", str(self.sshd[host].pid), "-m", "umount", "-l", target],
                 check=False)

    def mounts(self, host: str) -> list[str]:
        """FUSE mounts (``TARGET FSTYPE``) in ``host``'s mount namespace."""
        return [f"{target} {fstype}" for target, fstype in self._fuse_mounts(host)]

    def processes(self, host: str) -> list[str]:
        """Command lines of processes in ``host``'s namespace other than its sshd."""
        out = []
        for pid in netns_pids(self.ns(host)):
            if pid == self.sshd[host].pid:
                continue
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if cmd.startswith("sshd:") or cmd.startswith(SSHD):
                continue
            out.append(f"{pid} {cmd.strip()}")
        return out

