"""Crash tests by manifest (ARCHITECTURE section 9).

A writer process (fsync_writer.py) records a file in a manifest only after its
fsync returned.  Mid-stream we kill -9 the client daemon or the storage
service, restart what was killed, remount, and every manifest entry must read
back byte-exact.  A run whose manifest is (nearly) empty proves nothing and
fails.
"""

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import HERE, MODES

MIN_ENTRIES = 5
WEAK_TIMEOUT = float(os.environ.get("DFUSE_WEAK_ATTR_TIMEOUT", "1.0"))


def start_writer(directory: Path, manifest: Path, seed: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(HERE / "fsync_writer.py"), str(directory),
                             str(manifest), str(seed)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def read_manifest(manifest: Path) -> list[tuple[str, int, str]]:
    if not manifest.exists():
        return []
    out = []
    for line in manifest.read_text().splitlines():
        name, size, digest = line.split()
        out.append((name, int(size), digest))
    return out


def wait_entries(manifest: Path, proc: subprocess.Popen, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(read_manifest(manifest)) < n:
        if proc.poll() is not None:
            pytest.fail(f"writer exited early: {proc.stdout.read()}")
        if time.monotonic() > deadline:
            pytest.fail(f"writer recorded only {len(read_manifest(manifest))} files in {timeout}s")
        time.sleep(0.05)


def stop_writer(proc: subprocess.Popen, grace: float = 10, cluster=None, node: int = 0) -> str:
    """Let the writer notice the crash, or kill it; returns its output.

    A process waiting on a FUSE request the daemon has already taken cannot be
    killed until the daemon answers; if SIGKILL does not end the writer, the
    client daemon ``node`` of ``cluster`` is killed too (that aborts the
    connection and frees the writer).
    """
    try:
        out, _ = proc.communicate(timeout=grace)
        return out or ""
    except subprocess.TimeoutExpired:
        proc.kill()
    try:
        out, _ = proc.communicate(timeout=10)
        return out or ""
    except subprocess.TimeoutExpired:
        if cluster is None:
            raise
        print(f"writer stuck in the mount after SIGKILL; killing client node{node}")
        if cluster.client_alive(node):
            cluster.kill_client(node, sig=signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
        return out or ""


def verify(manifest: Path, directory: Path) -> int:
    entries = read_manifest(manifest)
    assert len(entries) >= MIN_ENTRIES, f"only {len(entries)} files recorded: the test proves nothing"
    bad = []
    for name, size, digest in entries:
        try:
            data = (directory / name).read_bytes()
        except OSError as e:
            bad.append(f"{name}: {e}")
            continue
        if len(data) != size or hashlib.sha256(data).hexdigest() != digest:
            bad.append(f"{name}: {len(data)} bytes sha256 {hashlib.sha256(data).hexdigest()[:12]}, "
                       f"recorded {size} bytes sha256 {digest[:12]}")
    assert not bad, f"{len(bad)} of {len(entries)} fsynced files lost or wrong:\n" + "\n".join(bad[:20])
    return len(entries)


@pytest.mark.parametrize("mode", MODES)
def test_client_kill9_then_remount(mode, make_cluster, workdir):
    c = make_cluster(mode, nodes=1)
    manifest = workdir / "manifest"
    w = start_writer(c.mount(0), manifest, seed=1)
    wait_entries(manifest, w, MIN_ENTRIES + 5)
    c.kill_client(0, sig=signal.SIGKILL)
    print(stop_writer(w))
    c.restart_client(0)
    n = verify(manifest, c.mount(0))
    print(f"{n} fsynced files survived client kill -9")


@pytest.mark.parametrize("mode", MODES)
def test_storage_kill9_then_restart(mode, make_cluster, workdir):
    c = make_cluster(mode, nodes=1)
    manifest = workdir / "manifest"
    w = start_writer(c.mount(0), manifest, seed=2)
    wait_entries(manifest, w, MIN_ENTRIES + 5)
    c.kill_storage(sig=signal.SIGKILL)
    time.sleep(0.5)
    # The client may block or fail while storage is gone; either is fine here.
    c.restart_storage()
    before = len(read_manifest(manifest))
    time.sleep(3)
    after = len(read_manifest(manifest))
    print(f"writer {'continued' if after > before else 'did not continue'} after the storage "
          f"restart without a remount ({before} -> {after} files)")
    print(stop_writer(w, grace=0, cluster=c, node=0))
    c.restart_client(0)
    n = verify(manifest, c.mount(0))
    print(f"{n} fsynced files survived storage kill -9")
    # The export itself holds them too.
    verify(manifest, c.export_dir)


@pytest.mark.parametrize("mode", MODES)
def test_fsynced_data_readable_on_other_node_after_client_kill9(mode, make_cluster, workdir):
    c = make_cluster(mode, nodes=2)
    manifest = workdir / "manifest"
    w = start_writer(c.mount(0), manifest, seed=3)
    wait_entries(manifest, w, MIN_ENTRIES + 5)
    c.kill_client(0, sig=signal.SIGKILL)
    stop_writer(w)
    if mode == "weakwriteback":
        time.sleep(WEAK_TIMEOUT + 0.6)
    verify(manifest, c.mount(1))        # node1 never looked at these files
    c.restart_client(0)
    verify(manifest, c.mount(0))


def test_verify_detects_loss(workdir):
    """The checker itself fails on a lost or corrupted file."""
    d = workdir / "d"
    d.mkdir()
    manifest = workdir / "manifest"
    lines = []
    for k in range(MIN_ENTRIES):
        data = bytes([k]) * 10
        (d / f"f{k}").write_bytes(data)
        lines.append(f"f{k} {len(data)} {hashlib.sha256(data).hexdigest()}")
    manifest.write_text("\n".join(lines) + "\n")
    verify(manifest, d)
    (d / "f0").write_bytes(b"x" * 10)
    with pytest.raises(AssertionError):
        verify(manifest, d)
    (d / "f0").unlink()
    with pytest.raises(AssertionError):
        verify(manifest, d)
