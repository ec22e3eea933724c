"""tools/dfuse-reproduce: the phase that reads every node's working set before a fio point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "support"))
from runner_module import load_runner  # noqa: E402

runner = load_runner()


class LocalNodes:
    """Runs each node's workload here, as the local cluster does."""
    start_delay = None

    def start_on(self, i, cmd, out_path, log_path, env=None, at=None):
        with open(out_path, "w") as out, open(log_path, "w") as log:
            return subprocess.Popen([sys.executable if cmd[0] == "python3" else cmd[0], *cmd[1:]],
                                    stdout=out, stderr=log)


def working_sets(tmp_path: Path, size: int) -> list[list[str]]:
    sets = []
    for node in range(2):
        files = []
        for k in range(3):
            f = tmp_path / f"n{node}-f{k}"
            f.write_bytes(bytes([k]) * size)
            files.append(str(f))
        sets.append(files)
    return sets


def test_every_file_is_read_in_full(tmp_path: Path):
    sets = working_sets(tmp_path, 3 * (1 << 20) + 5)  # more than one read, and a tail
    seconds = runner.prime_phase(LocalNodes(), sets, 3 * (1 << 20) + 5, tmp_path, "pt")
    assert seconds >= 0
    for node in range(2):
        assert (tmp_path / f"pt-node{node}.prime.json").exists()


def test_a_file_that_reads_short_fails_the_point(tmp_path: Path):
    sets = working_sets(tmp_path, 4096)
    Path(sets[1][2]).write_bytes(b"")  # end-of-file at once on a file that should be full
    with pytest.raises(runner.PointFailed, match=r"n1-f2 read 0 bytes, expected 4096 "
                                                 r"\(1 file\(s\) short"):
        runner.prime_phase(LocalNodes(), sets, 4096, tmp_path, "pt")


def test_a_file_that_cannot_be_read_fails_the_point(tmp_path: Path):
    sets = working_sets(tmp_path, 4096)
    Path(sets[0][0]).unlink()
    with pytest.raises(runner.PointFailed, match="(?s)exit 1: .*No such file.*n0-f0"):
        runner.prime_phase(LocalNodes(), sets, 4096, tmp_path, "pt")
