"""Reading fio's JSON output: totals over the nodes of one measurement."""

from __future__ import annotations

import json
import statistics
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


class FioOutputError(ValueError):
    """A node's fio output is not a valid measurement."""


# A node's threads together must have run threads x runtime, give or take:
# fio stops a thread early on an error or a short read at end of file, and
# a thread that goes on well past the end (a stuck revoke) stretches it; such
# a point measures something else. A thread's last I/O may start just before
# the end, so each thread may also run over by its own slowest I/O: on a
# loaded machine one slow I/O at the end of a short run is a measurement,
# not a stretch. With group_reporting one job entry stands for several
# threads and reports their summed runtime but a single slowest I/O, which
# then counts once for each of them. (The runner fsyncs after fio, timed
# apart, so fio's runtime is the I/O phase alone.)
MIN_RUNTIME_SHARE = 0.9
MAX_RUNTIME_SHARE = 1.15


def check_output(path: Path, threads: int, runtime_s: float, read_pct: int) -> None:
    """Raises FioOutputError unless ``path`` is fio JSON of a whole, error-free run that
    completed I/O of each kind the mix asks for (reads unless read_pct is 0, writes
    unless it is 100)."""
    try:
        jobs = json.loads(Path(path).read_text())["jobs"]
    except (OSError, ValueError, KeyError) as e:
        raise FioOutputError(f"{path}: not fio JSON output ({e})") from None
    if not jobs:
        raise FioOutputError(f"{path}: no jobs")
    reads = writes = runtime_ms = slowest_ms = 0
    threads_per_entry = max(1, round(threads / len(jobs)))  # group_reporting: all in one
    for job in jobs:
        if job.get("error", 0) != 0:
            raise FioOutputError(f"{path}: fio job {job.get('jobname')} ended with error "
                                 f"{job['error']}")
        reads += job["read"]["total_ios"]
        writes += job["write"]["total_ios"]
        runtime_ms += job.get("job_runtime", 0)
        slowest_ms += threads_per_entry * max(
            job[d]["lat_ns"].get("max", 0) for d in ("read", "write")) / 1e6
    if reads + writes == 0:
        raise FioOutputError(f"{path}: no I/O completed")
    if read_pct > 0 and reads == 0:
        raise FioOutputError(f"{path}: no read completed in a {read_pct}% read mix")
    if read_pct < 100 and writes == 0:
        raise FioOutputError(f"{path}: no write completed in a {100 - read_pct}% write mix")
    want_ms = threads * runtime_s * 1000
    if runtime_ms < MIN_RUNTIME_SHARE * want_ms:
        raise FioOutputError(f"{path}: the threads ran {runtime_ms / 1000:.1f} s of the "
                             f"{want_ms / 1000:.0f} s configured ({threads} x {runtime_s:g} s): "
                             "some stopped early")
    if runtime_ms > MAX_RUNTIME_SHARE * want_ms + slowest_ms:
        raise FioOutputError(f"{path}: the threads ran {runtime_ms / 1000:.1f} s where "
                             f"{want_ms / 1000:.0f} s were configured ({threads} x "
                             f"{runtime_s:g} s), more than their slowest I/Os "
                             f"({slowest_ms / 1000:.1f} s) explain: a thread outlasted "
                             "the runtime")


# The job section of workloads/fio/*.fio that warms up before the measured one.
WARMUP_JOB = "warmup"


def split_warmup(path: Path, warmup_path: Path) -> None:
    """Moves the warm-up job's entries of fio's JSON at ``path`` into ``warmup_path``,
    leaving the measured job's: the rest of the runner reads one job's output per file.
    Output that is not fio JSON is left as it is, for check_output to report."""
    path = Path(path)
    try:
        out = json.loads(path.read_text())
        jobs = out["jobs"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    warmup = [j for j in jobs if j.get("jobname") == WARMUP_JOB]
    if not warmup:
        return
    measured = [j for j in jobs if j.get("jobname") != WARMUP_JOB]
    Path(warmup_path).write_text(json.dumps(dict(out, jobs=warmup), indent=1))
    path.write_text(json.dumps(dict(out, jobs=measured), indent=1))


def summarize(outputs: list[Path]) -> dict:
    """Sums bandwidth and operations over nodes (one output per node); latency is the
    mean over all operations (reads and writes weighted by their counts), as in the
    paper. ``node_spread``: the busiest node's operations over the median node's, how
    unevenly the sum was made (1.0 for one node). ``median_node_bytes_per_s``: the
    median node's bandwidth times the number of nodes, the sum had every node done what
    the median node did; one node that never waits (a contended point can settle that
    way or not, run by run) moves the sum by orders of magnitude and this not at all."""
    bw = ops = iops = lat_weighted = 0.0
    per_node, node_bw = [], []
    for path in outputs:
        node_ops = node_bytes = 0
        for job in json.loads(Path(path).read_text())["jobs"]:
            for direction in ("read", "write"):
                d = job[direction]
                n = d["total_ios"]
                node_bytes += d["bw_bytes"]
                iops += d["iops"]
                node_ops += n
                lat_weighted += d["lat_ns"]["mean"] * n
        per_node.append(node_ops)
        node_bw.append(node_bytes)
        ops += node_ops
        bw += node_bytes
    median = statistics.median(per_node) if per_node else 0
    return {"bytes_per_s": bw, "iops": iops, "ops": int(ops),
            "lat_mean_us": lat_weighted / ops / 1000.0 if ops else 0.0,
            "node_ops": per_node,
            "node_spread": round(max(per_node) / median, 2) if median > 0 else 0.0,
            "median_node_bytes_per_s":
                statistics.median(node_bw) * len(node_bw) if node_bw else 0.0}


def git_commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], check=True,
                              capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
