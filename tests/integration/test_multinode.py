"""Cross-node visibility on a 3-node cluster of each mode.

What each mode promises (and so what is asserted):
* writethrough: close-to-open. Once a writer closed (or fsynced) a file, an
  open on any node that starts afterwards sees its data, size and namespace
  changes immediately.
* weakwriteback: close-to-open too (an open that starts after another node's
  close returned sees its data and size, also for a file this node has
  cached); what is not opened again (a stat of a cached file, the namespace)
  follows after the attribute/entry timeout (1 s).
"""

import errno
import hashlib
import os
import random
import threading
import time

import pytest

from conftest import MODES, STRONG_MODES, modes_of, only_if_weakwriteback

NODES = 3
WEAK_TIMEOUT = float(os.environ.get("DFUSE_WEAK_ATTR_TIMEOUT", "1.0"))
SIZES = (0, 1, 4095, 4096, (1 << 20) + 7, 8 << 20)


def payload(tag: str, size: int) -> bytes:
    return random.Random(f"{tag}:{size}").randbytes(size)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha(path) -> tuple[int, str]:
    h, n = hashlib.sha256(), 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            n += len(chunk)
    return n, h.hexdigest()


def settle(mode: str) -> None:
    """Wait until another node may be expected to see a change in ``mode``."""
    if mode == "weakwriteback":
        time.sleep(WEAK_TIMEOUT + 0.6)


@pytest.fixture(params=MODES)
def cluster(request, make_cluster):
    return make_cluster(request.param, nodes=NODES)


def test_file_contents_visible_on_other_nodes(cluster):
    a, others = cluster.mount(0), [cluster.mount(i) for i in range(1, NODES)]
    for size in SIZES:
        with open(a / f"f{size}", "wb") as f:
            f.write(payload("x", size))
    settle(cluster.mode)
    for size in SIZES:
        want = (size, sha(payload("x", size)))
        for m in others:
            assert os.stat(m / f"f{size}").st_size == size, f"stat size on {m}"
            assert file_sha(m / f"f{size}") == want, f"contents of f{size} on {m}"


def test_fsync_reaches_storage(cluster):
    """After fsync returns, the storage export holds the bytes (both modes)."""
    data = payload("fsync", 300_001)
    with open(cluster.mount(1) / "synced", "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
        assert (cluster.export_dir / "synced").read_bytes() == data


def test_namespace_changes_visible(cluster):
    a, others = cluster.mount(0), [cluster.mount(i) for i in range(1, NODES)]

    def expect(present: set, absent: set, where: str):
        settle(cluster.mode)
        for m in others:
            for rel in present:
                assert os.path.lexists(m / rel), f"{rel} missing on {m} after {where}"
            for rel in absent:
                assert not os.path.lexists(m / rel), f"{rel} still on {m} after {where}"
            top = set(os.listdir(m))
            want_top = {p.split("/")[0] for p in present}
            assert want_top <= top, f"listdir({m}) = {sorted(top)} after {where}"

    os.mkdir(a / "d")
    (a / "d" / "f").write_bytes(b"hello")
    expect({"d", "d/f"}, set(), "mkdir+create")
    os.rename(a / "d" / "f", a / "d" / "g")
    expect({"d/g"}, {"d/f"}, "rename")
    for m in others:
        assert (m / "d" / "g").read_bytes() == b"hello"
    os.rename(a / "d", a / "e")
    expect({"e", "e/g"}, {"d"}, "directory rename")
    os.unlink(a / "e" / "g")
    expect({"e"}, {"e/g"}, "unlink")
    os.rmdir(a / "e")
    expect(set(), {"e"}, "rmdir")
    for m in others:
        with pytest.raises(FileNotFoundError):
            os.stat(m / "e")


def opened(path, flags=os.O_RDONLY) -> tuple[int, bytes]:
    """Opens ``path`` (the close-to-open point) and returns fstat's size and the contents."""
    fd = os.open(path, flags)
    try:
        size = os.fstat(fd).st_size
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return size, b"".join(chunks)
    finally:
        os.close(fd)


@pytest.mark.parametrize("mode", modes_of("writethrough", "weakwriteback"))
def test_other_node_sees_overwrite_append_and_truncate(make_cluster, mode):
    """Close-to-open on a file the reader HAS cached: every change is seen by the next open."""
    c = make_cluster(mode, nodes=NODES)
    a, b = c.mount(0), c.mount(1)

    def expect(data: bytes, where: str):
        for reader in (b, c.mount(2)):
            assert opened(reader / "f") == (len(data), data), f"{reader} after {where}"

    (a / "f").write_bytes(payload("v1", 10000))
    expect(payload("v1", 10000), "create")
    (a / "f").write_bytes(payload("v2", 5000))          # O_TRUNC + shorter rewrite
    expect(payload("v2", 5000), "rewrite")
    with open(a / "f", "ab") as f:                     # append
        f.write(b"tail")
    expect(payload("v2", 5000) + b"tail", "append")
    os.truncate(a / "f", 3)
    expect(payload("v2", 5000)[:3], "truncate")
    with open(a / "f", "r+b") as f:                    # in-place overwrite, same size
        f.write(b"XYZ")
    expect(b"XYZ", "overwrite")
    with open(a / "f", "ab") as f:                     # grow past a page
        f.write(payload("v3", 9000))
    expect(b"XYZ" + payload("v3", 9000), "append past a page")
    # And back the other way: B writes, A reads; B appends to what it has cached.
    (b / "f").write_bytes(b"from b")
    assert opened(a / "f") == (6, b"from b")
    with open(b / "f", "ab") as f:
        f.write(b"+more")
    assert opened(a / "f") == (11, b"from b+more")


@pytest.mark.parametrize("mode", STRONG_MODES)
def test_link_count_changed_elsewhere_is_seen_at_once(make_cluster, mode):
    """A file's link count is part of the attributes a node caches under its
    lease: a link, unlink or replacing rename on another node is seen by the
    next stat and fstat, with no timeout to wait for."""
    c = make_cluster(mode, nodes=2)
    a, b = c.mount(0), c.mount(1)
    (a / "f").write_bytes(b"data")
    fd = os.open(a / "f", os.O_RDONLY)
    try:
        def nlink_on_a(want: int, after: str):
            os.read(fd, 4)                           # reads under the lease
            os.lseek(fd, 0, os.SEEK_SET)
            for _ in range(2):                       # the second from what A caches
                assert os.stat(a / "f").st_nlink == want, f"stat after {after}"
                assert os.fstat(fd).st_nlink == want, f"fstat after {after}"

        nlink_on_a(1, "create")
        os.link(b / "f", b / "g")
        nlink_on_a(2, "link on b")
        (b / "h").write_bytes(b"other")
        os.rename(b / "h", b / "g")                  # g now names another file
        nlink_on_a(1, "rename over a link on b")
        os.link(b / "f", b / "g2")
        nlink_on_a(2, "second link on b")
        os.unlink(b / "g2")
        nlink_on_a(1, "unlink on b")
        os.link(b / "f", b / "g3")
        os.rename(b / "f", b / "g3")                 # two names of one file: nothing happens
        nlink_on_a(2, "rename onto its own link on b")
        os.unlink(b / "g3")
        os.unlink(b / "f")
        assert os.fstat(fd).st_nlink == 0, "fstat after the last unlink on b"
        assert os.read(fd, 4) == b"data"
    finally:
        os.close(fd)


@only_if_weakwriteback
def test_weakwriteback_open_file_sees_growth_at_the_next_open(make_cluster):
    """A node that keeps the file open cannot have its inode replaced: the next open
    still drops its pages and takes the grown size."""
    c = make_cluster("weakwriteback", nodes=2)
    a, b = c.mount(0), c.mount(1)
    (a / "g").write_bytes(b"A" * 5000)
    held = os.open(b / "g", os.O_RDONLY)
    try:
        assert os.read(held, 10000) == b"A" * 5000
        with open(a / "g", "r+b") as f:
            f.write(b"B" * 8000)
        assert opened(b / "g") == (8000, b"B" * 8000)
        assert os.pread(held, 10000, 0) == b"B" * 8000  # one inode, refreshed for both
    finally:
        os.close(held)
    counters = c.stats(1)["counters"]
    assert counters.get("close_to_open.refreshed_inodes", 0) >= 1


def test_concurrent_writers_on_different_files(cluster):
    per_thread, threads_per_node = 8, 2
    errors = []

    def writer(node: int, t: int):
        m = cluster.mount(node)
        try:
            for k in range(per_thread):
                name = f"w{node}_{t}_{k}"
                size = random.Random(name).randrange(0, 300_000)
                with open(m / name, "wb") as f:
                    f.write(payload(name, size))
        except Exception as e:  # reported below, with the node
            errors.append(f"node{node} thread {t}: {e!r}")

    ts = [threading.Thread(target=writer, args=(n, t)) for n in range(NODES) for t in range(threads_per_node)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in ts), "writers hung"
    assert not errors, errors
    settle(cluster.mode)
    names = [f"w{n}_{t}_{k}" for n in range(NODES) for t in range(threads_per_node) for k in range(per_thread)]
    for reader in range(NODES):
        m = cluster.mount(reader)
        listing = set(os.listdir(m))
        assert set(names) <= listing, f"node{reader} is missing {sorted(set(names) - listing)[:5]}"
        for name in names:
            size = random.Random(name).randrange(0, 300_000)
            assert file_sha(m / name) == (size, sha(payload(name, size))), f"{name} on node{reader}"


@pytest.mark.parametrize("mode", MODES)
def test_an_explicit_mtime_outlasts_the_data_written_before_it(make_cluster, mode):
    """utimensat(2) after a write(2): the earlier data reaches storage before
    the time is set, so its write-back cannot move the mtime later (the
    kernel writes its pages back before such a SETATTR; the daemon, which
    may hold them for its write-back delay, must too)."""
    c = make_cluster(mode, nodes=2)
    a, b = c.mount(0), c.mount(1)
    t = 1_000_000_000_000_000_000  # September 2001
    with open(a / "f", "wb") as f:
        f.write(payload("m", 10000))
        f.flush()
        os.utime(f.fileno(), ns=(t, t))
        time.sleep(1.5)  # past the daemon's write-back delay, the file still open
    settle(mode)
    assert (c.export_dir / "f").stat().st_mtime_ns == t, "on storage"
    assert os.stat(b / "f").st_mtime_ns == t, "on the other node"
    assert os.stat(a / "f").st_mtime_ns == t, "on the writer's node"
    assert (b / "f").read_bytes() == payload("m", 10000)


@only_if_weakwriteback
def test_weakwriteback_without_xattrs_asks_nothing_per_write(make_cluster):
    """weakwriteback --no-xattr: the first xattr call is answered ENOSYS and the
    kernel asks no more (no security.capability lookup per write(2)); the data
    still goes from one node to the other at close and open."""
    c = make_cluster("weakwriteback", nodes=2, client_args=["--no-xattr"])
    a, b = c.mount(0), c.mount(1)
    data = payload("noxattr", (1 << 20) + 7)
    with open(a / "f", "wb") as f:
        for off in range(0, len(data), 4096):
            f.write(data[off:off + 4096])  # one write(2) each
    with pytest.raises(OSError) as e:
        os.setxattr(a / "f", "user.color", b"blue")
    assert e.value.errno == errno.EOPNOTSUPP
    assert file_sha(b / "f") == (len(data), sha(data))
    counters = c.stats(0)["counters"]
    assert counters.get("fuse.getxattr", 0) <= 1 and counters.get("fuse.setxattr", 0) <= 1, counters


@pytest.mark.parametrize("mode", MODES)
def test_max_dirty_ratio_sets_the_mounts_share_of_dirty_pages(make_cluster, mode):
    """--max-dirty-ratio N raises the mount's backing device's max_ratio from
    FUSE's 1 % (which throttles a write-back cache to a few MB); without it the
    kernel's default stays."""
    c = make_cluster(mode, nodes=2, client_args=["--max-dirty-ratio", "40"])
    plain = make_cluster(mode, nodes=1, name="plain")

    def max_ratio(mount) -> int:
        return int(open(f"/sys/class/bdi/0:{os.minor(os.stat(mount).st_dev)}/max_ratio").read())

    assert [max_ratio(c.mount(i)) for i in range(2)] == [40, 40]
    assert max_ratio(plain.mount(0)) == 1
