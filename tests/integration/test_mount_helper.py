"""The client daemons as mount helpers: `mount -t fuse.dfuse-MODE HOST:PORT DIR`.

mount(8) runs /sbin/mount.fuse.dfuse-MODE SOURCE DIR -o OPTIONS and waits for
it; the helper must mount, detach, and exit 0 only once the mount is up (or
exit non-zero with the reason). The build makes `mount.fuse.dfuse-MODE` links
next to each binary.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import MODES, require_binaries, require_fuse
import dfuse_cluster as dc


def _wait_unmounted(path: Path, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if dc.mount_fstype(path) is None:
            return True
        time.sleep(0.1)
    return False


def tls_options(cluster) -> str:
    """The -o options that give a mount the cluster's CA and node0's certificate."""
    d = cluster.tls_dir
    return f"tls_ca={d}/ca.crt,tls_cert={d}/node0.crt,tls_key={d}/node0.key"


@pytest.fixture
def storage(make_cluster):
    """A running storage service (from a one-node cluster of the first mode)."""
    return make_cluster(MODES[0], nodes=1)


@pytest.mark.parametrize("mode", MODES)
def test_helper_link_mounts_detaches_and_unmounts(storage, workdir, mode):
    bins = require_binaries(mode)
    helper = bins[mode].parent / f"mount.fuse.dfuse-{mode}"
    assert helper.is_symlink(), f"{helper} is not built"
    mnt = workdir / f"helper-{mode}"
    mnt.mkdir()
    # mount(8)'s calling convention, with an fstab-only option and a daemon
    # option given through -o.
    r = subprocess.run([str(helper), storage.storage["address"], str(mnt), "-n", "-o",
                        f"_netdev,cache_size=64M,log_file={workdir}/helper-{mode}.log,"
                        + tls_options(storage)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    try:
        assert dc.mount_fstype(mnt) == f"fuse.dfuse-{mode}"
        (mnt / "via-helper").write_bytes(b"helper data")
        os.sync()
        assert (storage.export_dir / "via-helper").read_bytes() == b"helper data"
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True, timeout=30)
    assert _wait_unmounted(mnt)
    # The detached daemon exits by itself once unmounted.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        out = subprocess.run(["pgrep", "-f", f"mount.fuse.dfuse-{mode} .*{mnt}"],
                             capture_output=True, text=True).stdout
        if not out.strip():
            break
        time.sleep(0.1)
    assert not out.strip(), f"helper daemon still running: {out}"


def test_helper_reports_failure_to_mount(workdir):
    require_fuse()
    bins = require_binaries("writethrough")
    helper = bins["writethrough"].parent / "mount.fuse.dfuse-writethrough"
    mnt = workdir / "unreachable"
    mnt.mkdir()
    r = subprocess.run([str(helper), "127.0.0.1:1", str(mnt), "-o", "plaintext"],
                       capture_output=True, text=True,
                       timeout=60)
    assert r.returncode != 0
    assert "cannot reach the storage service at 127.0.0.1:1" in r.stderr
    assert dc.mount_fstype(mnt) is None


def test_real_mount_command(storage, workdir):
    """mount -t fuse.dfuse-writethrough, through a temporary /sbin helper link."""
    bins = require_binaries("writethrough")
    link = Path("/sbin/mount.fuse.dfuse-writethrough")
    if link.exists() or link.is_symlink():
        pytest.skip(f"{link} already exists; not touching it")
    if subprocess.run(["which", "mount"], capture_output=True).returncode != 0:
        pytest.skip("mount(8) not installed")
    mnt = workdir / "mount-cmd"
    mnt.mkdir()
    link.symlink_to(bins["writethrough"])
    try:
        r = subprocess.run(["mount", "-t", "fuse.dfuse-writethrough", storage.storage["address"],
                            str(mnt), "-o", "cache_size=32M," + tls_options(storage)],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        try:
            assert dc.mount_fstype(mnt) == "fuse.dfuse-writethrough"
            assert sorted(p.name for p in mnt.iterdir()) == sorted(
                p.name for p in storage.export_dir.iterdir())
        finally:
            subprocess.run(["umount", str(mnt)], capture_output=True, timeout=30)
        assert _wait_unmounted(mnt)
    finally:
        link.unlink()
