"""Reading fio's JSON output: totals over the nodes of one measurement."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def summarize(outputs: list[Path]) -> dict:
    """Sums bandwidth and operations over nodes; latency is the mean over all
    operations (reads and writes weighted by their counts), as in the paper."""
    bw = ops = iops = lat_weighted = 0.0
    for path in outputs:
        for job in json.loads(Path(path).read_text())["jobs"]:
            for direction in ("read", "write"):
                d = job[direction]
                n = d["total_ios"]
                bw += d["bw_bytes"]
                iops += d["iops"]
                ops += n
                lat_weighted += d["lat_ns"]["mean"] * n
    return {"bytes_per_s": bw, "iops": iops, "ops": int(ops),
            "lat_mean_us": lat_weighted / ops / 1000.0 if ops else 0.0}


def git_commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], check=True,
                              capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
