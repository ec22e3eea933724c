"""Users at the storage service, on real mounts: root squash and allowed ids.

Every storage call names the user it acts for; the storage service maps it
by the client's export rule and checks the call's permissions as that user
(storage/permission.h), so a client's root is not the export's root unless
the rule says so. The checks themselves are tests/unit/storage/
permission_test.cc; here the client side: its requests carry the right user
and groups, root's opens are checked by the storage service when root is
squashed, and data written back after the writer's request (the kernel's
write-back cache) still lands as the writer.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import MODES, STRONG_MODES

NOBODY = 65534


def as_user(uid: int, gid: int, groups: list[int], code: str) -> subprocess.CompletedProcess:
    """Runs Python ``code`` as ``uid``:``gid`` with supplementary ``groups``."""
    def drop():
        os.setgroups(groups)
        os.setgid(gid)
        os.setuid(uid)
    return subprocess.run([sys.executable, "-c", code], preexec_fn=drop, capture_output=True,
                          text=True, timeout=60)


def export_file(path: Path, data: str, mode: int, uid: int = 0, gid: int = 0) -> None:
    """Makes a file in the export directly, as the storage host would have it."""
    path.write_text(data)
    os.chown(path, uid, gid)
    os.chmod(path, mode)


@pytest.mark.parametrize("mode", MODES)
def test_squashed_root_cannot_make_root_files_or_read_private_ones(make_cluster, mode):
    c = make_cluster(mode, storage_args=["--default-access", "rw,root_squash"])
    os.chmod(c.export_dir, 0o777)
    export_file(c.export_dir / "secret", "root only\n", 0o600)
    m = c.mount(0)

    with pytest.raises(PermissionError):
        (m / "secret").read_text()
    with pytest.raises(PermissionError):
        with open(m / "secret", "a") as f:
            f.write("x")
    assert (c.export_dir / "secret").read_text() == "root only\n"
    assert os.stat(m / "secret").st_uid == 0  # attributes stay visible, as on NFS

    (m / "new").write_text("made by a squashed root\n")
    assert (c.export_dir / "new").stat().st_uid == NOBODY
    assert (c.export_dir / "new").stat().st_gid == NOBODY
    with pytest.raises(PermissionError):
        os.chown(m / "new", 0, 0)


@pytest.mark.parametrize("mode", MODES)
def test_a_client_acts_only_as_its_allowed_users(make_cluster, workdir, mode):
    os.chmod(workdir, 0o711)  # the users below reach the mount point through it
    c = make_cluster(mode, storage_args=["--default-access",
                                         "rw,no_root_squash,uids=1000-1999,gids=1000-5000"])
    shared = c.export_dir / "shared"
    shared.mkdir()
    os.chown(shared, 0, 5000)
    os.chmod(shared, 0o770)
    m = c.mount(0)

    # The client's root is outside the allowed ids.
    with pytest.raises(PermissionError):
        os.listdir(m / "shared")

    # User 1000 reaches the group's directory through a supplementary group,
    # and its files are its own. The data (and, with the kernel's write-back
    # cache, its times) go to storage after its write and must still act as
    # user 1000: the storage service refuses none of those calls.
    refusals = lambda: c.stats()["counters"].get("permission_refusals", 0)  # noqa: E731
    before = refusals()
    data = "x" * 300000
    r = as_user(1000, 1000, [5000], f"""
import os
p = {str(m / 'shared' / 'f')!r}
with open(p, "w") as f:
    f.write("x" * {len(data)})
os.chmod(p, 0o600)
with open(p, "a") as f:
    f.write("end")
    f.flush()
    os.fsync(f.fileno())
""")
    assert r.returncode == 0, r.stderr
    assert refusals() == before
    st = (shared / "f").stat()
    assert (st.st_uid, st.st_gid) == (1000, 1000)
    assert (shared / "f").read_text() == data + "end"

    # Written and closed with no fsync, then forgotten by the kernel: the
    # client's buffer cache writes it back later, from its own thread, still
    # as user 1000.
    r = as_user(1000, 1000, [5000], f"""
import os
fd = os.open({str(m / 'shared' / 'late')!r}, os.O_CREAT | os.O_WRONLY, 0o600)
os.write(fd, b"written late")
os.close(fd)
""")
    assert r.returncode == 0, r.stderr
    Path("/proc/sys/vm/drop_caches").write_text("2")
    deadline = time.monotonic() + 30
    while (shared / "late").read_text() != "written late" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (shared / "late").read_text() == "written late"
    assert refusals() == before

    # Without the group, the kernel already refuses; with it but as a user
    # outside the allowed ids, the storage service does.
    r = as_user(1001, 1001, [], f"open({str(m / 'shared' / 'g')!r}, 'w')")
    assert "PermissionError" in r.stderr, r.stderr
    r = as_user(2000, 2000, [5000], f"open({str(m / 'shared' / 'g')!r}, 'w')")
    assert "PermissionError" in r.stderr, r.stderr
    assert not (shared / "g").exists()


@pytest.mark.parametrize("mode", STRONG_MODES)
def test_a_revoke_writes_back_as_the_writer(make_cluster, workdir, mode):
    """Data another node's read revokes goes to storage from the revoking
    node's own thread, after the writer's requests: it must act as the
    writer (and the revoke's fsync as a user the rule allows), not as the
    client's root, which this rule refuses."""
    os.chmod(workdir, 0o711)
    c = make_cluster(mode, nodes=2, storage_args=["--default-access",
                                                  "rw,no_root_squash,uids=1000-1999,gids=1000-1999"])
    home = c.export_dir / "home"
    home.mkdir()
    os.chown(home, 1000, 1000)
    a, b = c.mount(0) / "home" / "f", c.mount(1) / "home" / "f"
    writer = subprocess.Popen(
        [sys.executable, "-c", f"""
import sys
with open({str(a)!r}, "w") as f:
    f.write("written on node 0\\n")
    f.flush()  # into this node's cache, not to storage: it holds the lease
    print("written", flush=True)
    sys.stdin.readline()
"""], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        preexec_fn=lambda: (os.setgroups([]), os.setgid(1000), os.setuid(1000)))
    try:
        assert writer.stdout.readline().strip() == "written"
        r = as_user(1000, 1000, [], f"print(open({str(b)!r}).read(), end='')")
        assert r.returncode == 0, r.stderr
        assert r.stdout == "written on node 0\n"
    finally:
        writer.communicate("\n", timeout=60)
    assert writer.returncode == 0


@pytest.mark.parametrize("mode", MODES)
def test_a_users_write_clears_set_id_bits_on_every_node(make_cluster, workdir, mode):
    """A write(2) by a user without CAP_FSETID clears S_ISUID, and S_ISGID where the
    group may execute, as on a local file system: the write succeeds, and the bits
    are gone at the storage service and on the other node, also once the writer's
    node has written to the file before (a client may skip asking the kernel's
    question before each write, dfuse.ko under its lease) and when another node set
    the bit in between."""
    os.chmod(workdir, 0o711)
    c = make_cluster(mode, nodes=2, storage_args=["--default-access", "rw,no_root_squash"])
    os.chmod(c.export_dir, 0o777)
    a, b = c.mount(0), c.mount(1)

    def user_appends(path: Path) -> None:
        r = as_user(1000, 1000, [], f"""
import os
with open({str(path)!r}, "a") as f:
    f.write("more\\n")
    f.flush()
    os.fsync(f.fileno())
""")
        assert r.returncode == 0, r.stderr

    def modes(name: str) -> tuple[int, int, int]:
        """The file's mode on both nodes and at storage; weakwriteback's nodes see
        another node's change once their cached attributes time out."""
        deadline = time.monotonic() + (0 if mode in STRONG_MODES else 10)
        while True:
            seen = tuple(os.stat(p / name).st_mode & 0o7777 for p in (a, b, c.export_dir))
            if len(set(seen)) == 1 or time.monotonic() > deadline:
                return seen
            time.sleep(0.2)

    for mode_bits, left in ((0o4777, 0o777), (0o6777, 0o777), (0o2767, 0o2767)):
        name = f"f{mode_bits:o}"
        (a / name).write_text("root's\n")
        os.chmod(a / name, mode_bits)
        user_appends(a / name)
        assert modes(name) == (left,) * 3, name

    # Written by the user before (a cache may remember that nothing needed
    # clearing), then set-user-ID again, on this node and on the other one.
    user_appends(a / "f4777")
    os.chmod(a / "f4777", 0o4777)
    user_appends(a / "f4777")
    assert modes("f4777") == (0o777,) * 3
    user_appends(a / "f4777")
    os.chmod(b / "f4777", 0o4777)
    user_appends(a / "f4777")
    assert modes("f4777") == (0o777,) * 3
    # Root (CAP_FSETID) keeps them.
    os.chmod(a / "f4777", 0o4777)
    with open(a / "f4777", "a") as f:
        f.write("root's again\n")
    assert modes("f4777") == (0o4777,) * 3


@pytest.mark.parametrize("mode", MODES)
def test_a_chmod_after_a_users_write_keeps_the_bits_it_set(make_cluster, workdir, mode):
    """The owner writes, then sets the set-user-ID bit (as an install does):
    the write came first, so its write-back, however late, clears nothing the
    chmod set (the daemon may hold the data past its write-back delay; it
    must reach storage before the chmod, as the kernel's own pages do)."""
    os.chmod(workdir, 0o711)
    c = make_cluster(mode, nodes=2, storage_args=["--default-access", "rw,no_root_squash"])
    os.chmod(c.export_dir, 0o777)
    a, b = c.mount(0), c.mount(1)
    r = as_user(1000, 1000, [], f"""
import os, time
with open({str(a / "tool")!r}, "w") as f:
    f.write("#!/bin/sh\\n")
    f.flush()
    os.fchmod(f.fileno(), 0o4755)
    time.sleep(1.5)  # past the daemon's write-back delay, the file still open
""")
    assert r.returncode == 0, r.stderr
    time.sleep(1.5)
    deadline = time.monotonic() + (0 if mode in STRONG_MODES else 10)
    while True:
        seen = tuple(os.stat(p / "tool").st_mode & 0o7777 for p in (a, b, c.export_dir))
        if len(set(seen)) == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert seen == (0o4755,) * 3, [oct(m) for m in seen]
    assert (c.export_dir / "tool").read_text() == "#!/bin/sh\n"
