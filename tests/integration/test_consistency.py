"""Linearizability of block reads and writes, checked by dfuse-checker.

Workers on one or more mounts write unique values to blocks of shared files
and read them back; the checker (workloads/consistency) decides whether the
recorded history is linearizable per block.

* One writethrough node: a single mount is coherent, so the checker must find
  no stale or out-of-order value -- its false-positive control. Torn reads
  are reported but not asserted on: Linux does not make a buffered read of a
  page atomic against a concurrent write of it (local ext4 and tmpfs tear the
  same way under dfuse-checker), so they say nothing about the checker.
* Three weakwriteback nodes sharing every block: their page caches go stale,
  so the checker must find violations -- proof that it can see them.

Multi-node writethrough (strong, with leases) is checked in test_leases.py.
"""

import json
import os
import subprocess


from conftest import checker_path

OPS = int(os.environ.get("DFUSE_CONSISTENCY_OPS", "20000"))


def run_checker(args, timeout=150):
    r = subprocess.run([str(checker_path()), *map(str, args)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=timeout)
    print(r.stdout)
    print(r.stderr[-4000:])
    return r


def run_workload(workdir, mounts, procs, files, blocks, seed):
    history, report = workdir / "history.jsonl", workdir / "report.json"
    args = ["run", "--procs", procs, "--ops", OPS, "--files", files, "--blocks", blocks,
            "--seed", seed, "--duration-limit", 90, "--history", history, "--report", report]
    for m in mounts:
        args += ["--mount", m]
    r = run_checker(args)
    assert r.returncode in (0, 1), f"dfuse-checker failed ({r.returncode}): {r.stderr[-2000:]}"
    return r, json.loads(report.read_text()), history


def test_single_writethrough_node_is_linearizable(make_cluster, workdir):
    checker_path()
    c = make_cluster("writethrough", nodes=1)
    r, report, _ = run_workload(workdir, [c.mount(0)], procs=4, files=2, blocks=8, seed=1)
    assert report["operations"] == OPS and not report["stopped_early"]
    assert report["failed"] == 0
    assert report["non_linearizable"] == 0, json.dumps(report["violating"][:3], indent=1)
    assert report["unknown"] == 0
    assert report["violations"] == sum(1 for p in report["per_register"] if p["torn_reads"])
    print(f"torn reads on one writethrough node: {report['torn_reads']}")


def test_weakwriteback_nodes_show_stale_reads(make_cluster, workdir):
    checker_path()
    c = make_cluster("weakwriteback", nodes=3)
    mounts = [c.mount(i) for i in range(3)]
    r, report, history = run_workload(workdir, mounts, procs=2, files=1, blocks=8, seed=2)
    assert report["failed"] == 0
    assert report["non_linearizable"] > 0, "stale page caches went unnoticed"
    assert r.returncode == 1
    # Each reported history is a small witness; some span two nodes.
    nodes_seen = []
    for v in report["violating"]:
        assert 1 <= len(v["history"]) <= 8, v
        nodes_seen.append({op["node"] for op in v["history"]})
    assert any(len(n) >= 2 for n in nodes_seen), nodes_seen

    # Checking the saved history again gives the same verdict.
    again = run_checker(["check", "--history", history, "--report", history.with_suffix(".2")])
    assert again.returncode == 1
    assert json.loads(history.with_suffix(".2").read_text())["violations"] == report["violations"]


def test_missing_mount_is_a_clear_usage_error(workdir):
    missing = workdir / "no-such-mount"
    r = run_checker(["run", "--mount", missing, "--ops", 10])
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert str(missing) in lines[-1] and "No such file or directory" in lines[-1], r.stderr
    assert run_checker(["--help"]).returncode == 0
    assert run_checker(["run"]).returncode == 2  # --mount is required
