"""tools/fio_results.py: a node's fio output counts only as a whole, error-free run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from fio_results import FioOutputError, check_output, summarize  # noqa: E402


def fio_json(tmp_path: Path, reads=100, writes=100, runtime_ms=4000, error=0,
             slowest_write_ms=0.005) -> Path:
    path = tmp_path / "node0.json"
    job = {"jobname": "random", "error": error, "job_runtime": runtime_ms,
           "read": {"total_ios": reads, "bw_bytes": reads * 4096, "iops": reads,
                    "lat_ns": {"mean": 1000.0, "max": 2000.0}},
           "write": {"total_ios": writes, "bw_bytes": writes * 4096, "iops": writes,
                     "lat_ns": {"mean": 3000.0, "max": slowest_write_ms * 1e6}}}
    path.write_text(json.dumps({"jobs": [job]}))
    return path


def test_a_whole_run_passes_and_sums(tmp_path):
    path = fio_json(tmp_path)
    check_output(path, threads=2, runtime_s=2, read_pct=50)
    s = summarize([path])
    assert s["ops"] == 200 and s["lat_mean_us"] == pytest.approx(2.0)


@pytest.mark.parametrize("kw, read_pct, message", [
    ({"reads": 0, "writes": 0}, 50, "no I/O completed"),
    ({"reads": 0}, 100, "no read completed"),          # the 0-bytes-read point
    ({"writes": 0}, 50, "no write completed"),
    ({"runtime_ms": 646}, 50, "ran 0.6 s of the 4 s configured"),
    ({"runtime_ms": 4700}, 50, "ran 4.7 s where 4 s were configured"),
    # 15 % and each of the two threads' slow last I/O explain 0.8 s over 4 s, not 0.9 s.
    ({"runtime_ms": 4900, "slowest_write_ms": 100}, 50, "more than their slowest I/Os"),
    ({"error": 5}, 50, "ended with error 5"),
])
def test_an_invalid_run_is_refused(tmp_path, kw, read_pct, message):
    with pytest.raises(FioOutputError, match=message):
        check_output(fio_json(tmp_path, **kw), threads=2, runtime_s=2, read_pct=read_pct)


def test_a_slow_last_io_may_end_past_the_runtime(tmp_path):
    # 2 x 2 s configured, 0.7 s over: within 15 % plus the slowest I/O (0.5 s), as
    # when a loaded machine stalls the I/O a thread started just before the end.
    path = fio_json(tmp_path, runtime_ms=4700, slowest_write_ms=500)
    check_output(path, threads=2, runtime_s=2, read_pct=50)


def test_each_thread_of_a_grouped_report_may_end_one_slow_io_late(tmp_path):
    # Writethrough at 8 nodes in the VM (results/vm-cluster-fig8-8): 4 threads x 6 s in
    # one group_reporting entry ran 29.6 s with a slowest I/O of 1.32 s; 15 % plus one
    # late I/O per thread (5.3 s) explains it, one late I/O for the group (1.3 s) did not.
    path = fio_json(tmp_path, runtime_ms=29647, slowest_write_ms=1322)
    check_output(path, threads=4, runtime_s=6, read_pct=50)
    with pytest.raises(FioOutputError, match="outlasted"):
        check_output(fio_json(tmp_path, runtime_ms=33000, slowest_write_ms=1322),
                     threads=4, runtime_s=6, read_pct=50)


def test_output_that_is_not_fio_json_is_refused(tmp_path):
    path = tmp_path / "node0.json"
    path.write_text("fio: failed to open file\n")
    with pytest.raises(FioOutputError, match="not fio JSON"):
        check_output(path, threads=1, runtime_s=1, read_pct=0)
