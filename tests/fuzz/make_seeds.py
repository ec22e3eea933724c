#!/usr/bin/python3
"""Writes the seed corpora of the protocol-buffer fuzz targets.

The seeds are committed (corpus/<target>/seed-*); this script documents what
they are and remakes them: `tests/fuzz/make_seeds.py`. Each seed is a short
well-formed session in the input format of its target (see the comment at
the top of each fuzz_*.cc): [selector byte][length byte][message bytes]...
The messages are encoded here by hand in the protocol-buffer wire format,
field by field, so that the script needs no generated code.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number: int, value) -> bytes:
    """One field: int -> varint, bytes/str -> length-delimited."""
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    if isinstance(value, str):
        value = value.encode()
    return varint(number << 3 | 2) + varint(len(value)) + value


def msg(*fields) -> bytes:
    return b"".join(field(n, v) for n, v in fields)


def call(selector: int, body: bytes) -> bytes:
    assert len(body) < 256, "a message must fit a length byte"
    return bytes([selector, len(body)]) + body


# fuzz_storage_service: the selector is the RPC's index in Dispatch().
LOOKUP, GETATTR, SETATTR, CREATE, MKNOD, MKDIR, SYMLINK, LINK, UNLINK, RMDIR, RENAME = range(11)
READLINK, READDIR, STATFS, READ, WRITE, FSYNC, FALLOCATE = range(11, 18)
SETXATTR, GETXATTR, LISTXATTR, REMOVEXATTR = range(18, 22)
ROOT = 0  # GFID values below 16 name the n-th GFID handed out, the root first

STORAGE = {
    "namespace": [
        call(MKDIR, msg((1, ROOT), (2, "d"), (3, 0o755))),
        call(CREATE, msg((1, 1), (2, "f"), (3, 0o644), (6, 1))),
        call(LINK, msg((1, 2), (2, ROOT), (3, "g"))),
        call(SYMLINK, msg((1, ROOT), (2, "s"), (5, "../../outside/secret"))),
        call(READLINK, msg((1, 4))),
        call(RENAME, msg((1, ROOT), (2, "g"), (3, 1), (4, "h"))),
        call(READDIR, msg((1, 1), (3, 16), (4, 1))),
        call(UNLINK, msg((1, 1), (2, "h"))),
        call(RMDIR, msg((1, ROOT), (2, "d"))),
    ],
    "data": [
        call(CREATE, msg((1, ROOT), (2, "f"), (3, 0o600), (6, 1))),
        call(WRITE, msg((1, 1), (2, msg((1, 4096), (2, "hello"))))),
        call(READ, msg((1, 1), (2, msg((1, 0), (2, 8192))))),
        call(FALLOCATE, msg((1, 1), (3, 0), (4, 65536))),
        call(SETATTR, msg((1, 1), (2, 8), (6, 100))),
        call(FSYNC, msg((1, 1))),
        call(GETATTR, msg((1, 1))),
        call(STATFS, msg((1, ROOT))),
    ],
    "xattrs_and_specials": [
        call(CREATE, msg((1, ROOT), (2, "f"), (3, 0o644))),
        call(SETXATTR, msg((1, 1), (2, "user.k"), (3, "v"))),
        call(GETXATTR, msg((1, 1), (2, "user.k"), (5, 64))),
        call(LISTXATTR, msg((1, 1), (5, 64))),
        call(REMOVEXATTR, msg((1, 1), (2, "user.k"))),
        call(MKNOD, msg((1, ROOT), (2, "fifo"), (3, 0o10644))),
        call(LOOKUP, msg((1, ROOT), (2, ".."))),
        call(LOOKUP, msg((1, ROOT), (2, "fifo"))),
        call(READ, msg((1, 2), (2, msg((1, 0), (2, 10))))),
    ],
}

# fuzz_lease_session: the selector picks one of three streams.
HELLO, ACQUIRE, RELEASE, REVOKE_ACK, HEARTBEAT = 1, 2, 3, 4, 5
READ_LEASE, WRITE_LEASE = 1, 2


def client(kind: int, body: bytes) -> bytes:
    return msg((kind, body))


LEASE = {
    "two_clients_share_then_write": [
        call(0, client(HELLO, msg((1, 1), (2, "a")))),
        call(1, client(HELLO, msg((1, 2), (2, "b")))),
        call(0, client(ACQUIRE, msg((1, 1), (2, 3), (3, READ_LEASE)))),
        call(1, client(ACQUIRE, msg((1, 1), (2, 3), (3, READ_LEASE)))),
        call(1, client(ACQUIRE, msg((1, 2), (2, 3), (3, WRITE_LEASE)))),
        call(0, client(REVOKE_ACK, msg((1, 3), (2, 1), (3, 0)))),
        call(1, client(HEARTBEAT, msg((1, 7)))),
        call(1, client(RELEASE, msg((1, 3)))),
    ],
    "reclaim_and_bad_order": [
        call(2, client(ACQUIRE, msg((1, 1), (2, 4), (3, WRITE_LEASE)))),
        call(0, client(HELLO, msg((1, 5), (3, msg((1, 4), (2, WRITE_LEASE), (3, 1 << 40)))))),
        call(0, client(HELLO, msg((1, 5)))),
        call(0, client(REVOKE_ACK, msg((1, 4), (2, 99), (3, WRITE_LEASE)))),
        call(0, client(ACQUIRE, msg((1, 2), (2, 4), (3, 7), (4, msg((1, 10), (2, 5)))))),
        call(0, client(RELEASE, msg((1, 9)))),
    ],
}


# fuzz_kernel_upcalls: the selector's low 3 bits pick the record's kind, its
# high 5 bits the inode (0 and 1 as they are, others an input's own).
K_LEASE, K_INTERRUPT_ONE, K_INTERRUPT_RAW, K_FORGET, K_LINK, K_OTHER, K_OPCODE = 0, 2, 3, 4, 5, 6, 7
NOINTR = 1


def upcall(kind: int, inode: int, body: bytes = b"") -> bytes:
    return call(inode << 3 | kind, body)


def lease_in(mode: int, flags: int = 0, start: int = 0, end: int = (1 << 64) - 1) -> bytes:
    """struct dfuse_lease_in, little-endian: u32 mode, u32 flags, u64 start, end."""
    return (mode.to_bytes(4, "little") + flags.to_bytes(4, "little") +
            start.to_bytes(8, "little") + end.to_bytes(8, "little"))


UPCALLS = {
    "read_then_upgrade_then_forget": [
        upcall(K_LEASE, 2, lease_in(READ_LEASE)),
        upcall(K_LEASE, 2, lease_in(WRITE_LEASE)),
        upcall(K_LEASE, 3, lease_in(WRITE_LEASE, NOINTR)),
        upcall(K_FORGET, 2),
        upcall(K_LEASE, 2, lease_in(READ_LEASE)),
    ],
    "contended_with_another_node": [
        upcall(K_LEASE, 4, lease_in(WRITE_LEASE)),
        upcall(K_OTHER, 4, b"\x01"),
        upcall(K_LEASE, 4, lease_in(READ_LEASE)),
        upcall(K_INTERRUPT_ONE, 0, b"\x02"),
        upcall(K_LINK, 5),
        upcall(K_OTHER, 5, b"\x00"),
    ],
    "malformed_and_foreign": [
        upcall(K_LEASE, 6, lease_in(7)),
        upcall(K_LEASE, 6, lease_in(READ_LEASE)[:12]),
        upcall(K_INTERRUPT_RAW, 0, (123456).to_bytes(8, "little")),
        upcall(K_OPCODE, 6, (15).to_bytes(4, "little")),
        upcall(K_LEASE, 1, lease_in(READ_LEASE)),
        upcall(K_LEASE, 0, lease_in(WRITE_LEASE, 0xFFFFFFFF, 1 << 40, 0)),
    ],
}


def write(target: str, seeds: dict) -> None:
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for name, calls in seeds.items():
        with open(os.path.join(d, f"seed-{name}"), "wb") as f:
            f.write(b"".join(calls))


def main() -> int:
    if len(sys.argv) > 1:
        print(__doc__.strip())
        return 0 if sys.argv[1] in ("-h", "--help") else 2
    write("fuzz_storage_service", STORAGE)
    write("fuzz_lease_session", LEASE)
    write("fuzz_kernel_upcalls", UPCALLS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
