"""Bad and hostile input through a mount.

* Over-long names fail with ENAMETOOLONG and create nothing; 255 bytes works.
* Odd but legal names ("...", "..x", spaces, newlines, non-UTF-8 bytes) round-trip
  exactly, into the export too.
* Symlink confinement.  The client kernel resolves symlinks (that is expected:
  a symlink to an absolute host path is followed on the client).  What must
  hold is that the *storage service* never follows one.  The tests use relative
  targets that resolve differently on the two sides: a link ``mnt/x ->
  ../victim`` resolves on the client to ``RUNDIR/nodeI/victim`` (absent) but on
  the storage side to ``RUNDIR/victim`` (a real file outside the export).  No
  operation through the mount may read, change or link that file.
"""

import errno
import os
import stat

import pytest

from conftest import MODES


@pytest.fixture(params=MODES)
def cluster(request, make_cluster):
    return make_cluster(request.param, nodes=1)


def expect_errno(code: int, fn, *args, **kw):
    with pytest.raises(OSError) as ei:
        fn(*args, **kw)
    shown = ", ".join(str(a)[:80] + ("..." if len(str(a)) > 80 else "") for a in args)
    assert ei.value.errno == code, f"{fn.__name__}({shown}): {errno.errorcode.get(ei.value.errno)} " \
                                   f"(want {errno.errorcode[code]})"


def test_name_length_limits(cluster):
    m, export = cluster.mount(0), cluster.export_dir
    ok = "n" * 255
    (m / ok).write_bytes(b"255")
    assert (m / ok).read_bytes() == b"255"
    assert (export / ok).read_bytes() == b"255"
    os.mkdir(m / "d")
    before = sorted(os.listdir(export)), sorted(os.listdir(export / "d"))
    for long in ("L" * 256, "L" * 1100):
        p = m / "d" / long
        expect_errno(errno.ENAMETOOLONG, os.open, p, os.O_CREAT | os.O_WRONLY, 0o644)
        expect_errno(errno.ENAMETOOLONG, os.mkdir, p)
        expect_errno(errno.ENAMETOOLONG, os.stat, p)
        expect_errno(errno.ENAMETOOLONG, os.symlink, "t", p)
        expect_errno(errno.ENAMETOOLONG, os.rename, m / ok, p)
        expect_errno(errno.ENAMETOOLONG, os.link, m / ok, p)
        # xattr names over XATTR_NAME_MAX: the kernel's VFS answers ERANGE.
        expect_errno(errno.ERANGE, os.setxattr, m / ok, "user." + long, b"v")
    # A symlink target longer than PATH_MAX is refused too.
    expect_errno(errno.ENAMETOOLONG, os.symlink, "t" * 5000, m / "d" / "s")
    # A path longer than PATH_MAX (the kernel refuses it before the daemon sees it).
    expect_errno(errno.ENAMETOOLONG, os.stat, m / "/".join(["abcdefgh"] * 600))
    assert (sorted(os.listdir(export)), sorted(os.listdir(export / "d"))) == before, \
        "a failed over-long operation changed the export"
    assert (export / ok).read_bytes() == b"255", "the 255-byte file was disturbed"


ODD_NAMES = ["...", "..x", "x..", ".hidden", "-rf", "with space", "tab\tname", "nl\nname",
             "ünïcødé", "back\\slash", "%s%n", "*"]


def test_odd_but_legal_names_round_trip(cluster):
    m, export = cluster.mount(0), cluster.export_dir
    raw = b"\xff\xfe-not-utf8"
    for i, name in enumerate(ODD_NAMES):
        (m / name).write_bytes(f"{i}".encode())
    fd = os.open(os.path.join(os.fsencode(m), raw), os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, b"raw")
    os.close(fd)
    want = set(ODD_NAMES)
    assert set(os.listdir(m)) == want | {os.fsdecode(raw)}
    assert set(os.listdir(export)) == want | {os.fsdecode(raw)}, "names changed on the way to storage"
    for i, name in enumerate(ODD_NAMES):
        assert (export / name).read_bytes() == f"{i}".encode(), name
    assert open(os.path.join(os.fsencode(export), raw), "rb").read() == b"raw"
    for name in ODD_NAMES:
        os.unlink(m / name)
    os.unlink(os.path.join(os.fsencode(m), raw))
    assert os.listdir(export) == []


def test_deep_nesting(cluster):
    m = cluster.mount(0)
    depth = 60
    rel = "/".join(f"d{i}" for i in range(depth))
    os.makedirs(m / rel)
    (m / rel / "leaf").write_bytes(b"deep")
    assert (cluster.export_dir / rel / "leaf").read_bytes() == b"deep"
    expect_errno(errno.EPERM, os.link, m / "d0", m / "d0link")          # no hard links to dirs
    expect_errno(errno.EINVAL, os.rename, m / "d0", m / rel / "inside")  # dir into own subtree


def _fingerprint(p):
    st = os.lstat(p)
    return (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_nlink, st.st_size,
            st.st_mtime_ns, open(p, "rb").read(), sorted(os.listxattr(p)))


def test_storage_never_follows_symlinks(cluster):
    m, rundir, export = cluster.mount(0), cluster.rundir, cluster.export_dir
    tool_entries = set(os.listdir(rundir))          # what the cluster tool made
    victim = rundir / "victim"                      # export/../victim, outside the export
    victim.write_bytes(b"secret outside the export")
    os.chmod(victim, 0o600)
    os.setxattr(victim, "user.secret", b"s3cret")
    os.utime(victim, ns=(1_000_000_000, 1_000_000_000))
    before = _fingerprint(victim)

    os.symlink("../victim", m / "x")
    assert os.readlink(m / "x") == "../victim"
    assert os.readlink(export / "x") == "../victim", "the link is stored as a link"

    # Following happens on the client, where ../victim does not exist.
    expect_errno(errno.ENOENT, open, m / "x", "rb")
    expect_errno(errno.ENOENT, os.stat, m / "x")

    # Metadata operations on the link itself (no-follow) must not reach the target.
    for fn, args, kw in (
        (os.chown, (m / "x", 4321, 4321), {"follow_symlinks": False}),
        (os.utime, (m / "x",), {"ns": (5 * 10**9, 5 * 10**9), "follow_symlinks": False}),
        (os.link, (m / "x", m / "hard"), {"follow_symlinks": False}),
    ):
        try:
            fn(*args, **kw)
        except OSError:
            pass  # refusing is acceptable; touching the target is not
        assert _fingerprint(victim) == before, f"{fn.__name__} on a symlink changed its target outside the export"
    with pytest.raises(OSError):
        os.getxattr(m / "x", "user.secret", follow_symlinks=False)
    assert "user.secret" not in os.listxattr(m / "x", follow_symlinks=False)
    if os.path.lexists(m / "hard"):
        assert stat.S_ISLNK(os.lstat(m / "hard").st_mode), "hard link to a symlink became a regular file"
        assert stat.S_ISLNK(os.lstat(export / "hard").st_mode)
        expect_errno(errno.ENOENT, open, m / "hard", "rb")

    # A symlink whose target resolves (storage-side) to a directory outside the export.
    outside = rundir / "outside-dir"
    outside.mkdir()
    (outside / "inside").write_bytes(b"x")
    os.symlink("../outside-dir", m / "dl")
    expect_errno(errno.ENOENT, os.listdir, m / "dl")
    expect_errno(errno.ENOENT, os.open, m / "dl" / "new", os.O_CREAT | os.O_WRONLY, 0o644)
    expect_errno(errno.ENOENT, os.mkdir, m / "dl" / "newdir")
    # Same from a subdirectory with a deeper relative target.
    os.mkdir(m / "sub")
    os.symlink("../../victim", m / "sub" / "y")
    expect_errno(errno.ENOENT, open, m / "sub" / "y", "rb")

    # Renaming and removing the links touches only the links.
    os.rename(m / "x", m / "x2")
    os.unlink(m / "x2")
    os.unlink(m / "dl")
    assert _fingerprint(victim) == before, "target outside the export changed"
    assert os.listdir(outside) == ["inside"], "something was created outside the export"
    assert set(os.listdir(rundir)) == tool_entries | {"victim", "outside-dir"}, \
        f"unexpected entries next to the export: {sorted(os.listdir(rundir))}"


def test_absolute_symlink_is_resolved_by_the_client(cluster, workdir):
    """An absolute target is followed by the client kernel (expected), and stored verbatim."""
    target = workdir / "client-side-target"
    m = cluster.mount(0)
    os.symlink(str(target), m / "abs")
    assert os.readlink(cluster.export_dir / "abs") == str(target)
    (m / "abs").write_bytes(b"via client")       # creates the host file through the client's VFS
    assert target.read_bytes() == b"via client"
    assert stat.S_ISLNK(os.lstat(cluster.export_dir / "abs").st_mode), "the link in the export was replaced"
