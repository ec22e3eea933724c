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
* The cluster way (one run per host, CLOCK_REALTIME histories merged within
  clock bounds, as tools/dfuse-reproduce does on an inventory): the
  weakwriteback nodes' stale reads are still found with a 0.2 ms bound,
  and two writethrough nodes stay linearizable.

Multi-node writethrough (strong, with leases) is checked in test_leases.py.
"""

import json
import os
import subprocess
import time


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
    # One node: every tear had one of its writers overlapping it.
    assert report["local_torn_reads"] == report["torn_reads"]
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
    late = run_checker(["run", "--mount", workdir, "--start-at", time.time() + 7200])
    assert late.returncode == 2 and "--start-at" in late.stderr.splitlines()[0], late.stderr


def run_per_node_and_merge(workdir, mounts, bound_ns, ops=3000, procs=2, files=1, blocks=8):
    """One `run` per mount with its own --first-node, as one per host on a cluster, and a
    `check` of the histories together, each widened by +-bound_ns. The runs start together
    (--start-at): each takes a few tens of milliseconds, and runs started one after another
    barely overlap, or not at all on a loaded machine."""
    layout = ["--files", files, "--blocks", blocks]
    assert run_checker(["prepare", "--mount", mounts[0], *layout]).returncode == 0
    start_at = f"{time.time() + 3:.3f}"
    procs_, histories = [], []
    for i, m in enumerate(mounts):
        histories.append(workdir / f"history-{i}.jsonl")
        cmd = [str(checker_path()), "run", "--mount", m, "--first-node", i, "--procs", procs,
               "--ops", ops // len(mounts), *layout, "--seed", 7, "--no-create", "--clock",
               "realtime", "--no-check", "--history", "-", "--duration-limit", 90,
               "--no-progress", "--start-at", start_at]
        with open(histories[-1], "w") as out:
            procs_.append(subprocess.Popen(list(map(str, cmd)), stdout=out))
    assert [p.wait(timeout=150) for p in procs_] == [0] * len(mounts)
    spans = []
    for i, h in enumerate(histories):
        ops_ = [json.loads(line) for line in h.read_text().splitlines()]
        spans.append((min(op["invoke_ns"] for op in ops_), max(op["return_ns"] for op in ops_)))
        assert len(ops_) == ops // len(mounts)
        assert {op["node"] for op in ops_} == {i}
        assert {op["process"] for op in ops_} == set(range(i * procs, (i + 1) * procs))
    # No run began after another ended: they ran at the same time.
    assert max(b for b, _ in spans) < min(e for _, e in spans), spans
    report = workdir / "merged-report.json"
    args = ["check", "--report", report]
    for h in histories:
        args += ["--history", h, f"--clock-offset=-{bound_ns}:{bound_ns}"]
    r = run_checker(args)
    assert r.returncode in (0, 1), f"dfuse-checker check failed ({r.returncode})"
    merged = json.loads(report.read_text())
    assert merged["clock_offsets_ns"] == [[-bound_ns, bound_ns]] * len(mounts)
    return r, merged


def test_stale_reads_are_found_in_histories_merged_from_separate_runs(make_cluster, workdir):
    checker_path()
    c = make_cluster("weakwriteback", nodes=3)
    r, report = run_per_node_and_merge(workdir, [c.mount(i) for i in range(3)],
                                       bound_ns=200_000)
    assert report["failed"] == 0
    assert report["non_linearizable"] > 0, "stale page caches went unnoticed after merging"
    assert r.returncode == 1


def test_writethrough_nodes_are_linearizable_in_merged_histories(make_cluster, workdir):
    checker_path()
    c = make_cluster("writethrough", nodes=2)
    r, report = run_per_node_and_merge(workdir, [c.mount(i) for i in range(2)],
                                       bound_ns=200_000, files=2)
    assert report["operations"] == 3000 and report["failed"] == 0
    assert report["non_linearizable"] == 0, json.dumps(report["violating"][:3], indent=1)
    assert report["unknown"] == 0
