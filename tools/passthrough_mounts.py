"""The benchmarks' FUSE ceilings: one dfuse-passthrough mount per node.

Each "node" is dfuse-passthrough serving its own local directory with the
kernel's write-back cache: no storage service, no leases, no network. What fio
reaches there is what FUSE itself reaches on this machine, and the benchmarks
report every mode as a fraction of it. Two ceilings:

    passthrough          serves extended attributes, as every mode does; the
                         kernel then asks for security.capability before
                         every write(2) (FUSE mounts are not SB_NOSEC)
    passthrough-noxattr  serves none; the kernel stops asking after the first

It stands in for a Cluster where the benchmark asks for ``up``, ``mount(i)``,
``stats(i)`` and ``down``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Optional

from dfuse_cluster import ClusterError, binary_path, find_build_dir

CEILINGS = {"passthrough": [], "passthrough-noxattr": ["--no-xattr"]}


class PassthroughMounts:
    def __init__(self, rundir: Path, nodes: int, ceiling: str = "passthrough",
                 build_dir: Optional[str] = None):
        self.rundir = Path(rundir)
        self.nodes = nodes
        self.flags = CEILINGS[ceiling]
        self.binary = binary_path(find_build_dir(build_dir), "passthrough")
        self.net_used = None  # no network: nothing emulated
        self._procs: list[subprocess.Popen] = []

    def mount(self, i: int) -> Path:
        return self.rundir / f"mnt{i}"

    def stats(self, i: int) -> dict:
        return {}  # the pass-through keeps no counters

    def up(self, timeout: float = 10.0) -> None:
        if not self.binary.is_file():
            raise ClusterError(f"dfuse-passthrough is not built: {self.binary}")
        for i in range(self.nodes):
            src, mnt = self.rundir / f"src{i}", self.mount(i)
            src.mkdir(parents=True, exist_ok=True)
            mnt.mkdir(parents=True, exist_ok=True)
            cmd = [str(self.binary), str(src), str(mnt), *self.flags]
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    text=True)
            self._procs.append(proc)
            deadline = time.monotonic() + timeout
            while not os.path.ismount(mnt):
                if proc.poll() is not None:
                    raise ClusterError(f"dfuse-passthrough on {mnt} exited: "
                                       f"{proc.stderr.read().strip()}")
                if time.monotonic() > deadline:
                    raise ClusterError(f"dfuse-passthrough did not mount {mnt} in {timeout:.0f} s")
                time.sleep(0.05)

    def down(self, timeout: float = 30.0) -> None:
        """Stops every daemon (SIGTERM unmounts); lazily unmounts what is left."""
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for i, proc in enumerate(self._procs):
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if os.path.ismount(self.mount(i)):
                subprocess.run(["umount", "-l", str(self.mount(i))], capture_output=True)
        self._procs = []
