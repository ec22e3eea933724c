"""Crash-test writer: write files into a directory, record each after its fsync.

Usage: python3 fsync_writer.py DIR MANIFEST SEED [MAX_FILES]

For file k it writes seeded random data (0..256 KiB, in a few chunks,
sometimes rewriting part of it), fsyncs it, and only then appends
``name size sha256`` to MANIFEST (itself fsynced, on a local file system).
It stops at the first error (the daemon was killed: that is the point) or
after MAX_FILES files.  Exit status 0 either way; the manifest is the result.
"""

import hashlib
import os
import random
import sys


def content(seed: int, k: int) -> bytes:
    rng = random.Random(f"{seed}:{k}")
    size = rng.choice((0, 1, 4095, 4096, 4097)) if rng.random() < 0.2 else rng.randrange(0, 256 * 1024)
    return rng.randbytes(size)


def main() -> int:
    d, manifest, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    limit = int(sys.argv[4]) if len(sys.argv) > 4 else 1 << 30
    mfd = os.open(manifest, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    for k in range(limit):
        name = f"m{seed}_{k:05d}"
        data = content(seed, k)
        try:
            fd = os.open(os.path.join(d, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                # Several writes, then an overwrite of the first bytes with the same data.
                for off in range(0, len(data), 65536):
                    os.pwrite(fd, data[off:off + 65536], off)
                if data:
                    os.pwrite(fd, data[:100], 0)
                os.fsync(fd)
            finally:
                try:
                    os.close(fd)
                except OSError:
                    pass
        except OSError as e:
            print(f"writer: stopped at {name}: {e}", flush=True)
            return 0
        # Recorded only now: the fsync returned.
        os.write(mfd, f"{name} {len(data)} {hashlib.sha256(data).hexdigest()}\n".encode())
        os.fsync(mfd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
