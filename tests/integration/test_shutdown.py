"""Client daemons stop when told to, even when storage is gone.

Contract: SIGTERM unmounts and exits 0; SIGKILL always ends the daemon, which
aborts its FUSE connection so processes using the mount get an error instead
of hanging.  A daemon that touches its own mount while shutting down can wedge
itself: a thread stuck in a FUSE request it should answer itself keeps
/dev/fuse open after SIGKILL, and everything using the mount hangs until the
connection is aborted by hand (fusectl).
"""

import errno
import os
import signal
import subprocess
import sys
import time

import pytest

import dfuse_cluster as dc
from conftest import MODES


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while dc.pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def fail_stuck(c, i: int, what: str):
    """Record the failure, then let the tool abort the connection so nothing stays wedged."""
    pid = c.pid(i)
    # A thread waiting on a FUSE request (its own mount?) sleeps in state D.
    stacks = dc.kernel_stacks(pid)
    c.abort_client(i)
    c.anomalies.clear()
    pytest.fail(f"node{i} (pid {pid}) {what}; threads blocked in the kernel: "
                f"{stacks or 'none seen'}")


def sigterm_and_wait(c, i: int, timeout: float, what: str) -> int:
    """SIGTERM node ``i`` and return its exit status; fails the test (``what``) if it
    is still running after ``timeout`` seconds."""
    pid = c.pid(i)
    proc = c._popen[pid]
    os.kill(pid, signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        fail_stuck(c, i, what)
        raise


@pytest.mark.parametrize("mode", MODES)
def test_sigterm_unmounts_and_exits_zero(mode, make_cluster):
    c = make_cluster(mode, nodes=1)
    (c.mount(0) / "f").write_bytes(b"data")
    rc = sigterm_and_wait(c, 0, 15, "did not exit within 15s of SIGTERM")
    assert rc == 0, f"exit status {rc} after SIGTERM"
    assert dc.mount_fstype(c.mount(0)) is None, "still mounted after SIGTERM"
    assert (c.export_dir / "f").read_bytes() == b"data"


def _blocked_accessor(mnt):
    """A process that writes into the mount and fsyncs (blocks while storage is down)."""
    code = (f"import os\nfd = os.open({str(mnt / 'g')!r}, os.O_CREAT | os.O_WRONLY)\n"
            "os.write(fd, b'y')\nos.fsync(fd)\n")
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


@pytest.mark.parametrize("mode", MODES)
def test_sigkill_with_storage_down_ends_the_daemon(mode, make_cluster):
    c = make_cluster(mode, nodes=1)
    (c.mount(0) / "f").write_bytes(b"x" * 5000)
    c.kill_storage(sig=signal.SIGKILL)
    user = _blocked_accessor(c.mount(0))
    time.sleep(1)
    pid = c.pid(0)
    os.kill(pid, signal.SIGKILL)
    if not wait_gone(pid, 10):
        user.kill()
        fail_stuck(c, 0, "survived SIGKILL for 10s while storage was down")
    try:
        user.wait(timeout=10)
    except subprocess.TimeoutExpired:
        user.kill()
        pytest.fail("a process using the mount still hangs after the daemon was killed")


@pytest.mark.parametrize("mode", MODES)
def test_sigterm_with_storage_down_exits(mode, make_cluster):
    """With storage unreachable the daemon cannot flush, but it must still exit (any status)."""
    c = make_cluster(mode, nodes=1)
    (c.mount(0) / "f").write_bytes(b"x" * 5000)
    c.kill_storage(sig=signal.SIGKILL)
    user = _blocked_accessor(c.mount(0))
    time.sleep(1)
    pid = c.pid(0)
    os.kill(pid, signal.SIGTERM)
    gone = wait_gone(pid, 30)
    user.kill()
    if not gone:
        fail_stuck(c, 0, "did not exit within 30s of SIGTERM while storage was down")


@pytest.mark.parametrize("mode", MODES)
def test_sigterm_with_the_mount_in_use_aborts_its_connection_and_exits(mode, make_cluster):
    """A detached mount that a process keeps using would keep the connection open: the
    daemon aborts it itself before leaving, so no thread of it can stay asleep on a
    request only it could answer, and the user gets an error at once."""
    c = make_cluster(mode, nodes=1)
    (c.mount(0) / "f").write_bytes(b"data")
    code = (f"import os, sys, time\nfd = os.open({str(c.mount(0) / 'f')!r}, os.O_RDONLY)\n"
            "print('open', flush=True)\n"
            "while True:\n"
            "    try:\n"
            "        os.pread(fd, 4, 0)\n"
            "    except OSError as e:\n"
            "        print(e.errno, flush=True)\n"
            "        sys.exit(0)\n"
            "    time.sleep(0.05)\n")
    user = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert user.stdout.readline().strip() == "open"
        rc = sigterm_and_wait(c, 0, 20, "did not exit within 20s of SIGTERM with its mount in use")
        assert rc == 0, f"exit status {rc} after SIGTERM"
        c.clients[0]["pid"] = None
        log = open(c.clients[0]["log"]).read()
        # The loop may also have ended on its own (then there was nothing to abort).
        assert "cannot abort" not in log, log[-2000:]
        out, _ = user.communicate(timeout=10)
        # An error, not a hang: ENOTCONN from the aborted connection, or EIO
        # from a page read that the ended connection failed.
        assert int(out.strip()) in (errno.ENOTCONN, errno.EIO), out
    finally:
        user.kill()
        user.wait()
