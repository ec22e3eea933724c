"""Differential test: one seeded random op stream on tmpfs and on a DFUSE mount.

Every operation's outcome (value or errno) must match, and so must the final
trees.  After the run the client is stopped (which flushes it) and the
storage export itself must equal the reference: the data really reached
storage, not just the kernel cache.

Seeds are new every run (printed, and part of any failure message); fix them
with DFUSE_DIFF_SEEDS=1,2,3.  DFUSE_DIFF_OPS sets the stream length (default
10000).
"""

import os
import time

import pytest

import fsops
from conftest import DIFF_SEEDS, MODES, STRONG_MODES


SEEDS = DIFF_SEEDS
N_OPS = int(os.environ.get("DFUSE_DIFF_OPS", "10000"))


def test_driver_detects_a_difference(tmp_path):
    """The comparison itself can fail: two trees that differ by one byte."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "f").write_bytes(b"x")
    (b / "f").write_bytes(b"y")
    with pytest.raises(fsops.Mismatch):
        fsops.differential(str(a), str(b), seed=1, n=0)


def test_stream_is_deterministic():
    assert list(fsops.generate(42, 300)) == list(fsops.generate(42, 300))
    assert list(fsops.generate(42, 300)) != list(fsops.generate(43, 300))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mode", MODES)
def test_differential(mode, seed, make_cluster, tmpfs_dir):
    c = make_cluster(mode, nodes=1)
    mnt = c.mount(0)
    print(f"differential: mode={mode} seed={seed} ops={N_OPS} (DFUSE_DIFF_SEEDS={seed} to repeat)")
    t0 = time.monotonic()
    ok = fsops.differential(str(tmpfs_dir), str(mnt), seed, N_OPS, names=("tmpfs", mode))
    print(f"differential: {ok} of {N_OPS} ops succeeded in {time.monotonic() - t0:.1f}s")
    # A stream that did nothing proves nothing.
    assert ok > N_OPS // 10, f"only {ok} of {N_OPS} operations succeeded"
    assert fsops.snapshot(str(tmpfs_dir)), "reference tree is empty at the end"

    # Stopping the client flushes it; then storage's export must equal the reference.
    c.stop_client(0)
    d = fsops.diff_snapshots(fsops.snapshot(str(tmpfs_dir)), fsops.snapshot(str(c.export_dir)),
                             names=("tmpfs", "export"))
    assert not d, f"seed {seed}: storage export differs from reference after unmount:\n  " + "\n  ".join(d)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mode", STRONG_MODES)
def test_differential_across_nodes(mode, seed, make_cluster, tmpfs_dir):
    """The strong modes (zero entry timeouts, leases for file data and
    attributes): a stream whose ops each open and close what they use may hop
    between 3 nodes at random and must still match tmpfs op by op."""
    c = make_cluster(mode, nodes=3)
    mounts = [str(c.mount(i)) for i in range(3)]
    n = N_OPS // 2
    print(f"differential across nodes: seed={seed} ops={n} (DFUSE_DIFF_SEEDS={seed} to repeat)")
    ok = fsops.differential(str(tmpfs_dir), mounts, seed, n, names=("tmpfs", mode), fd_ops=False)
    assert ok > n // 10, f"only {ok} of {n} operations succeeded"
