"""Seeded random file-system operation streams for differential testing.

``generate(seed, n)`` yields ``n`` operations drawn only from a
``random.Random(seed)`` (never from file-system state), so one seed means one
stream.  ``Runner(root).apply(op)`` executes an op below ``root`` and returns
its outcome, ``("ok", value)`` or ``("err", "ENOENT")``.  ``differential``
applies the same stream to two trees, compares every outcome and finally the
two trees (``snapshot``).

Names come from a small pool, so collisions, ENOENT/EEXIST/ENOTEMPTY/ENOTDIR
and renames over existing entries are frequent.  Symlink targets never
leave the tree (no ``..``; absolute targets point below a directory that does
not exist), so following a symlink cannot touch anything outside the root.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import random
import stat
from dataclasses import dataclass
from typing import Iterator, Optional

POOL = ("a", "b", "c", "d", "e")
SYMLINK_TARGETS = ("a", "b", "c/d", "a/b/c", "zz", "/nonexistent-dfuse-diff/x")
MODES = (0o644, 0o600, 0o755, 0o700, 0o444, 0o640, 0o000)
XATTR_NAMES = ("user.a", "user.b", "user.long.name")
FD_SLOTS = 4

_libc = ctypes.CDLL(None, use_errno=True)
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
AT_FDCWD = -100


def renameat2(src: str, dst: str, flags: int) -> None:
    """renameat2(2) via ctypes (Python has no wrapper)."""
    r = _libc.renameat2(AT_FDCWD, os.fsencode(src), AT_FDCWD, os.fsencode(dst), ctypes.c_uint(flags))
    if r != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), src)


@dataclass(frozen=True)
class Op:
    """One operation: ``kind`` plus keyword arguments (all plain, printable values)."""
    kind: str
    args: tuple

    def __str__(self) -> str:
        parts = []
        for k, v in self.args:
            if isinstance(v, bytes):
                v = f"<{len(v)} bytes sha1 {hashlib.sha1(v).hexdigest()[:8]}>"
            parts.append(f"{k}={v!r}" if not isinstance(v, str) or k != "data" else f"{k}={v}")
        return f"{self.kind}({', '.join(parts)})"

    def get(self, key: str):
        return dict(self.args)[key]


# (kind, weight)
WEIGHTS = (
    ("write", 14), ("read", 8), ("append", 4), ("truncate", 4), ("create_excl", 2),
    ("open_trunc", 2), ("mkdir", 6), ("rmdir", 4), ("unlink", 4), ("rename", 6),
    ("rename_noreplace", 2), ("rename_exchange", 2), ("link", 2), ("symlink", 3),
    ("readlink", 2), ("chmod", 3), ("setxattr", 3), ("getxattr", 2), ("listxattr", 2),
    ("removexattr", 2), ("fallocate", 2), ("stat", 5), ("fsync", 2), ("readdir", 4),
    ("fd_open", 3), ("fd_write", 4), ("fd_read", 3), ("fd_truncate", 1), ("fd_stat", 2),
    ("fd_fsync", 1), ("fd_close", 2),
)
_KINDS = [k for k, _ in WEIGHTS]


def _path(rng: random.Random) -> str:
    depth = rng.choices((1, 2, 3), weights=(50, 35, 15))[0]
    return "/".join(rng.choice(POOL) for _ in range(depth))


def _offset(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.3:
        return 0
    if r < 0.7:
        return rng.randrange(0, 16384)
    if r < 0.95:
        return rng.randrange(0, 262144)
    return rng.randrange(0, 2 * 1024 * 1024)


def _length(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.1:
        return 0
    if r < 0.7:
        return rng.randrange(1, 4200)
    if r < 0.97:
        return rng.randrange(1, 70000)
    return rng.randrange(1, 300000)


def _data(rng: random.Random, n: int) -> bytes:
    # Cheap but seed-determined content: a random 64-byte block repeated with a counter.
    block = rng.randbytes(64)
    reps = n // 64 + 1
    return b"".join(block[:60] + i.to_bytes(4, "little") for i in range(reps))[:n]


def generate(seed: int, n: int, fd_ops: bool = True) -> Iterator[Op]:
    """The ``n`` operations of stream ``seed``.

    ``fd_ops=False`` leaves out operations on long-lived descriptors (a
    different stream): every remaining op opens and closes what it uses, so
    close-to-open consistency makes it valid across several nodes.
    """
    rng = random.Random(seed)
    kinds = [k for k in _KINDS if fd_ops or not k.startswith("fd_")]
    weights = [w for k, w in WEIGHTS if fd_ops or not k.startswith("fd_")]
    for _ in range(n):
        kind = rng.choices(kinds, weights=weights)[0]
        a: dict = {}
        if kind in ("write",):
            a = dict(path=_path(rng), offset=_offset(rng), data=_data(rng, _length(rng)),
                     create=rng.random() < 0.7)
        elif kind == "read":
            a = dict(path=_path(rng), offset=_offset(rng), length=_length(rng))
        elif kind == "append":
            a = dict(path=_path(rng), data=_data(rng, _length(rng)))
        elif kind == "truncate":
            a = dict(path=_path(rng), size=rng.choice((0, 1, 4095, 4096, 4097)) if rng.random() < 0.3
                     else _offset(rng))
        elif kind in ("create_excl", "open_trunc"):
            a = dict(path=_path(rng), data=_data(rng, _length(rng) if rng.random() < 0.5 else 0))
        elif kind in ("mkdir", "rmdir", "unlink", "readlink", "stat", "fsync", "readdir", "listxattr"):
            a = dict(path=_path(rng))
        elif kind in ("rename", "rename_noreplace", "rename_exchange", "link"):
            src = _path(rng)
            # Sometimes aim a directory into its own subtree (EINVAL).
            dst = src + "/" + rng.choice(POOL) if rng.random() < 0.08 else _path(rng)
            a = dict(src=src, dst=dst)
        elif kind == "symlink":
            a = dict(target=rng.choice(SYMLINK_TARGETS), path=_path(rng))
        elif kind == "chmod":
            a = dict(path=_path(rng), mode=rng.choice(MODES))
        elif kind == "setxattr":
            a = dict(path=_path(rng), name=rng.choice(XATTR_NAMES),
                     value=rng.randbytes(rng.choice((0, 1, 17, 200))),
                     flags=rng.choice((0, 0, os.XATTR_CREATE, os.XATTR_REPLACE)))
        elif kind in ("getxattr", "removexattr"):
            a = dict(path=_path(rng), name=rng.choice(XATTR_NAMES))
        elif kind == "fallocate":
            a = dict(path=_path(rng), offset=_offset(rng), length=rng.randrange(1, 70000))
        elif kind == "fd_open":
            a = dict(slot=rng.randrange(FD_SLOTS), path=_path(rng),
                     mode=rng.choice(("r", "rw", "rw", "rwc", "append")))
        elif kind == "fd_write":
            a = dict(slot=rng.randrange(FD_SLOTS), offset=_offset(rng), data=_data(rng, _length(rng)))
        elif kind == "fd_read":
            a = dict(slot=rng.randrange(FD_SLOTS), offset=_offset(rng), length=_length(rng))
        elif kind == "fd_truncate":
            a = dict(slot=rng.randrange(FD_SLOTS), size=_offset(rng))
        elif kind in ("fd_stat", "fd_fsync", "fd_close"):
            a = dict(slot=rng.randrange(FD_SLOTS))
        yield Op(kind, tuple(a.items()))


def _stat_value(st: os.stat_result, with_nlink: bool = True) -> tuple:
    """The comparable part of a stat: type, permission bits, size (not dirs), nlink."""
    kind = stat.S_IFMT(st.st_mode)
    size = None if stat.S_ISDIR(st.st_mode) else st.st_size
    return (kind, stat.S_IMODE(st.st_mode), size, st.st_nlink if with_nlink else None)


def _pread_all(fd: int, length: int, offset: int) -> bytes:
    out = bytearray()
    while len(out) < length:
        chunk = os.pread(fd, length - len(out), offset + len(out))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def _write_all(fd: int, data: bytes, offset: Optional[int]) -> int:
    done = 0
    while done < len(data):
        if offset is None:
            n = os.write(fd, data[done:])
        else:
            n = os.pwrite(fd, data[done:], offset + done)
        done += n
    return done


class Runner:
    """Executes operations below ``root``; keeps its own fd slots."""

    def __init__(self, root: str):
        self.root = root
        self.fds: list[Optional[int]] = [None] * FD_SLOTS

    def p(self, rel: str) -> str:
        return os.path.join(self.root, rel)

    def close_all(self) -> None:
        for i, fd in enumerate(self.fds):
            if fd is not None:
                os.close(fd)
                self.fds[i] = None

    def apply(self, op: Op) -> tuple:
        """Run ``op``; ("ok", value) or ("err", errno name)."""
        try:
            return ("ok", getattr(self, "op_" + op.kind)(**dict(op.args)))
        except OSError as e:
            return ("err", errno.errorcode.get(e.errno, str(e.errno)))

    def _slot(self, slot: int) -> int:
        fd = self.fds[slot]
        if fd is None:
            raise OSError(errno.EBADF, "slot empty")
        return fd

    # ---- path operations

    def _with_fd(self, path: str, flags: int, fn, mode: int = 0o644):
        fd = os.open(self.p(path), flags, mode)
        try:
            return fn(fd)
        finally:
            os.close(fd)

    def op_write(self, path, offset, data, create):
        flags = os.O_WRONLY | (os.O_CREAT if create else 0)
        return self._with_fd(path, flags, lambda fd: _write_all(fd, data, offset))

    def op_read(self, path, offset, length):
        return self._with_fd(path, os.O_RDONLY, lambda fd: _pread_all(fd, length, offset))

    def op_append(self, path, data):
        return self._with_fd(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                             lambda fd: (_write_all(fd, data, None), os.fstat(fd).st_size))

    def op_truncate(self, path, size):
        os.truncate(self.p(path), size)
        return os.stat(self.p(path)).st_size

    def op_create_excl(self, path, data):
        return self._with_fd(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                             lambda fd: _write_all(fd, data, 0), mode=0o640)

    def op_open_trunc(self, path, data):
        return self._with_fd(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC,
                             lambda fd: (os.fstat(fd).st_size, _write_all(fd, data, None),
                                         os.fstat(fd).st_size))

    def op_mkdir(self, path):
        os.mkdir(self.p(path), 0o755)

    def op_rmdir(self, path):
        os.rmdir(self.p(path))

    def op_unlink(self, path):
        os.unlink(self.p(path))

    def op_rename(self, src, dst):
        os.rename(self.p(src), self.p(dst))

    def op_rename_noreplace(self, src, dst):
        renameat2(self.p(src), self.p(dst), RENAME_NOREPLACE)

    def op_rename_exchange(self, src, dst):
        renameat2(self.p(src), self.p(dst), RENAME_EXCHANGE)

    def op_link(self, src, dst):
        os.link(self.p(src), self.p(dst), follow_symlinks=False)
        return os.lstat(self.p(dst)).st_nlink

    def op_symlink(self, target, path):
        os.symlink(target, self.p(path))

    def op_readlink(self, path):
        return os.readlink(self.p(path))

    def op_chmod(self, path, mode):
        os.chmod(self.p(path), mode)
        return stat.S_IMODE(os.stat(self.p(path)).st_mode)

    def op_setxattr(self, path, name, value, flags):
        os.setxattr(self.p(path), name, value, flags)

    def op_getxattr(self, path, name):
        return os.getxattr(self.p(path), name)

    def op_listxattr(self, path):
        return sorted(n for n in os.listxattr(self.p(path)) if n.startswith("user."))

    def op_removexattr(self, path, name):
        os.removexattr(self.p(path), name)

    def op_fallocate(self, path, offset, length):
        def go(fd):
            os.posix_fallocate(fd, offset, length)
            return os.fstat(fd).st_size
        return self._with_fd(path, os.O_WRONLY, go)

    def op_stat(self, path):
        return _stat_value(os.lstat(self.p(path)))

    def op_fsync(self, path):
        return self._with_fd(path, os.O_RDONLY, os.fsync)

    def op_readdir(self, path):
        return sorted(os.listdir(self.p(path)))

    # ---- fd operations

    def op_fd_open(self, slot, path, mode):
        flags = {"r": os.O_RDONLY, "rw": os.O_RDWR, "rwc": os.O_RDWR | os.O_CREAT,
                 "append": os.O_WRONLY | os.O_APPEND}[mode]
        fd = os.open(self.p(path), flags, 0o644)
        if self.fds[slot] is not None:
            os.close(self.fds[slot])
        self.fds[slot] = fd

    def op_fd_write(self, slot, offset, data):
        fd = self._slot(slot)  # pwrite on an O_APPEND fd appends (Linux)
        return (_write_all(fd, data, offset), _stat_value(os.fstat(fd))[2])

    def op_fd_read(self, slot, offset, length):
        return _pread_all(self._slot(slot), length, offset)

    def op_fd_truncate(self, slot, size):
        os.ftruncate(self._slot(slot), size)
        return _stat_value(os.fstat(self._slot(slot)))[2]

    def op_fd_stat(self, slot):
        return _stat_value(os.fstat(self._slot(slot)))

    def op_fd_fsync(self, slot):
        os.fsync(self._slot(slot))

    def op_fd_close(self, slot):
        os.close(self._slot(slot))
        self.fds[slot] = None


# --------------------------------------------------------------------------
# whole-tree comparison


def snapshot(root: str) -> dict:
    """Everything comparable below ``root``: per relative path, a tuple of
    (type, mode, size, nlink, content sha256 / symlink target, user xattrs)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                extra = os.readlink(full)
                xattrs = ()
            else:
                if stat.S_ISREG(st.st_mode):
                    h = hashlib.sha256()
                    with open(full, "rb") as f:
                        for chunk in iter(lambda: f.read(1 << 20), b""):
                            h.update(chunk)
                    extra = h.hexdigest()
                else:
                    extra = None
                xattrs = tuple(sorted((n, os.getxattr(full, n, follow_symlinks=False))
                                      for n in os.listxattr(full, follow_symlinks=False)
                                      if n.startswith("user.")))
            out[rel] = _stat_value(st) + (extra, xattrs)
    return out


def diff_snapshots(a: dict, b: dict, names=("A", "B"), limit: int = 20) -> list[str]:
    """Human-readable differences between two snapshots (empty if equal)."""
    lines = []
    for rel in sorted(set(a) | set(b)):
        if a.get(rel) != b.get(rel):
            lines.append(f"{rel}: {names[0]}={a.get(rel)} {names[1]}={b.get(rel)}")
            if len(lines) >= limit:
                lines.append("...")
                break
    return lines


class Mismatch(AssertionError):
    """The two trees disagreed on an operation or on the final state."""


def _short(outcome: tuple) -> str:
    kind, v = outcome
    if isinstance(v, bytes) and len(v) > 48:
        return f"{kind}: <{len(v)} bytes sha1 {hashlib.sha1(v).hexdigest()[:10]} head {v[:16]!r}>"
    return f"{kind}: {v!r}"


def differential(root_a: str, root_b, seed: int, n: int, names=("reference", "mount"),
                 check_every: int = 0, fd_ops: bool = True) -> int:
    """Apply stream ``seed`` (``n`` ops) to both sides; raise Mismatch on the first
    differing outcome or on a final tree difference.  Returns the number of ops
    that succeeded (so callers can check the stream did real work).

    ``root_b`` may be a list of roots that show the same tree (mounts of one
    file system on several nodes): each op then runs on one of them, picked by
    a second generator seeded from ``seed``, and the final trees of all of them
    must equal the reference.  ``check_every`` > 0 also compares whole trees
    every that many ops.
    """
    roots_b = [root_b] if isinstance(root_b, (str, os.PathLike)) else list(root_b)
    ra, rbs = Runner(str(root_a)), [Runner(str(r)) for r in roots_b]
    pick = random.Random(f"pick:{seed}")
    ok = 0
    try:
        for i, op in enumerate(generate(seed, n, fd_ops=fd_ops)):
            j = pick.randrange(len(rbs))
            out_a, out_b = ra.apply(op), rbs[j].apply(op)
            if out_a != out_b:
                where = f" (on {roots_b[j]})" if len(rbs) > 1 else ""
                raise Mismatch(f"seed {seed} op #{i}: {op}{where}\n  {names[0]}: {_short(out_a)}\n"
                               f"  {names[1]}: {_short(out_b)}")
            ok += out_a[0] == "ok"
            if check_every and (i + 1) % check_every == 0:
                d = diff_snapshots(snapshot(str(root_a)), snapshot(str(roots_b[j])), names)
                if d:
                    raise Mismatch(f"seed {seed}: trees differ after op #{i} ({op}):\n  " + "\n  ".join(d))
    finally:
        ra.close_all()
        for rb in rbs:
            rb.close_all()
    ref = snapshot(str(root_a))
    for r in roots_b:
        d = diff_snapshots(ref, snapshot(str(r)), (names[0], f"{names[1]} {r}"))
        if d:
            raise Mismatch(f"seed {seed}: final trees differ after {n} ops:\n  " + "\n  ".join(d))
    return ok
