"""dfuse-passthrough, the benchmarks' FUSE ceiling, on a real mount.

What goes through the mount lands in the source directory unchanged, with the
kernel's write-back cache and without it (the corner cases write-back brings:
appends, partial pages of write-only opens); SIGTERM unmounts; a bad source is
a one-line error.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import build_dir, require_fuse


def passthrough_bin() -> Path:
    path = build_dir() / "workloads" / "passthrough" / "dfuse-passthrough"
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.skip(f"dfuse-passthrough not built: {path}")
    return path


def wait_for(cond, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@contextlib.contextmanager
def running(workdir: Path, *extra: str):
    """(source, mountpoint) of a running dfuse-passthrough; stopped with SIGTERM after."""
    require_fuse()
    src, mnt = workdir / "src", workdir / "mnt"
    src.mkdir()
    mnt.mkdir()
    proc = subprocess.Popen([str(passthrough_bin()), str(src), str(mnt), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: os.path.ismount(mnt) or proc.poll() is not None, "the mount")
        assert proc.poll() is None, proc.communicate()
        yield src, mnt
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert not os.path.ismount(mnt), "SIGTERM left the mount behind"


@pytest.fixture(params=["writeback", "no-writeback"])
def mount(request, workdir):
    with running(workdir, *(["--no-writeback"] if request.param == "no-writeback" else [])) as m:
        yield m


def test_what_goes_through_the_mount_lands_in_the_source(mount):
    src, mnt = mount
    data = os.urandom(3 * 4096 + 123)
    (mnt / "d").mkdir()
    with open(mnt / "d" / "f", "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    assert (src / "d" / "f").read_bytes() == data
    assert (mnt / "d" / "f").read_bytes() == data
    os.rename(mnt / "d" / "f", mnt / "d" / "g")
    assert sorted(os.listdir(mnt / "d")) == ["g"] and sorted(os.listdir(src / "d")) == ["g"]
    os.chmod(mnt / "d" / "g", 0o640)
    os.truncate(mnt / "d" / "g", 100)
    os.utime(mnt / "d" / "g", ns=(1_000_000_000, 2_000_000_000))
    st = os.stat(src / "d" / "g")
    assert (st.st_mode & 0o777, st.st_size, st.st_mtime_ns) == (0o640, 100, 2_000_000_000)
    assert os.stat(mnt / "d" / "g").st_mtime_ns == 2_000_000_000
    assert (src / "d" / "g").read_bytes() == data[:100]
    os.unlink(mnt / "d" / "g")
    os.rmdir(mnt / "d")
    assert os.listdir(src) == [] and os.listdir(mnt) == []


def test_a_directory_of_many_entries_lists_whole(mount):
    src, mnt = mount
    names = {f"entry-with-a-longish-name-{i:04d}" for i in range(600)}  # several READDIRs
    for n in names:
        (src / n).write_bytes(b"")
    assert set(os.listdir(mnt)) == names


def test_appends_and_partial_pages_of_write_only_opens(mount):
    src, mnt = mount
    for chunk in (b"first\n", b"second\n"):
        fd = os.open(mnt / "log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.write(fd, chunk)
        os.close(fd)
    assert (src / "log").read_bytes() == b"first\nsecond\n"
    (src / "page").write_bytes(b"a" * 8192)
    fd = os.open(mnt / "page", os.O_WRONLY)
    os.pwrite(fd, b"bb", 4095)  # straddles two pages the kernel must read first
    os.fsync(fd)
    os.close(fd)
    assert (src / "page").read_bytes() == b"a" * 4095 + b"bb" + b"a" * 4095


def test_extended_attributes_pass_through_unless_turned_off(workdir):
    with running(workdir) as (src, mnt):
        (mnt / "f").write_bytes(b"x")
        os.setxattr(mnt / "f", "user.color", b"blue")
        assert os.getxattr(src / "f", "user.color") == b"blue"
        assert os.getxattr(mnt / "f", "user.color") == b"blue"
        assert "user.color" in os.listxattr(mnt / "f")
        os.removexattr(mnt / "f", "user.color")
        assert os.listxattr(src / "f") == []
    (workdir / "off").mkdir()
    with running(workdir / "off", "--no-xattr") as (src, mnt):
        (mnt / "f").write_bytes(b"x")
        with pytest.raises(OSError) as e:
            os.setxattr(mnt / "f", "user.color", b"blue")
        assert e.value.errno == errno.EOPNOTSUPP
        assert os.listxattr(src / "f") == []


def test_a_missing_source_is_a_one_line_error(workdir):
    (workdir / "mnt").mkdir()
    r = subprocess.run([str(passthrough_bin()), str(workdir / "nope"), str(workdir / "mnt")],
                       capture_output=True, text=True, timeout=30)
    out = (r.stdout + r.stderr).strip()
    assert r.returncode == 2 and len(out.splitlines()) == 1 and "nope" in out, (r.returncode, out)
    assert not os.path.ismount(workdir / "mnt")
