"""tools/dfuse-reproduce on real local clusters, with the `smoke` profile of
workloads/matrix.toml (seconds per point), then plots/draw.py on its output.

Every mode this machine runs takes part (dfuse only with dfuse.ko, in the VM).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import (MODES, REPO, build_dir, checker_path, require_binaries, require_fuse,
                      run_tool)

RUNNER = REPO / "tools" / "dfuse-reproduce"
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


def reproduce(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    r = run_tool([PYTHON, str(RUNNER), "--build-dir", str(build_dir()), "--net", "none", *args],
                 timeout=timeout)
    print(r.stdout[-4000:], r.stderr[-4000:])
    return r


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_dry_run_prints_the_plan():
    r = reproduce("--profile", "quick", "--dry-run", "--modes", "writethrough,weakwriteback")
    assert r.returncode == 0
    # quick: Fig. 6 (10) + Fig. 7 (4 new) + Fig. 8 (2 new) + Fig. 9 (6) + checker (1)
    assert "23 points x 2 modes" in r.stdout
    assert "fio-random-r50-c50-n8" in r.stdout


def test_max_nodes_leaves_out_the_bigger_points():
    r = reproduce("--profile", "quick", "--figures", "fig8,fig6", "--max-nodes", "2",
                  "--dry-run", "--modes", "writethrough")
    assert r.returncode == 0, r.stderr
    # Fig. 6 runs on 4 nodes: only Fig. 8's 2-node point is left.
    assert "1 points x 1 modes" in r.stdout and "figures fig8;" in r.stdout
    assert "fio-random-r50-c50-n2" in r.stdout and "-n4" not in r.stdout


def test_an_inventory_with_too_few_clients_is_refused_before_anything_starts(tmp_path: Path):
    inv = tmp_path / "two.yml"
    inv.write_text("all:\n  children:\n"
                   "    storage: {hosts: {st01: {ansible_host: 192.0.2.1}}}\n"
                   "    lease_managers: {hosts: {st01: {}}}\n"
                   "    clients: {hosts: {c01: {ansible_host: 192.0.2.2}, "
                   "c02: {ansible_host: 192.0.2.3}}}\n")
    r = reproduce("--inventory", str(inv), "--profile", "quick", "--figures", "fig8",
                  "--dry-run")
    assert r.returncode == 2
    assert "4, 8 client nodes" in r.stderr and "--max-nodes 2" in r.stderr
    r = reproduce("--inventory", str(inv), "--profile", "quick", "--figures", "fig8",
                  "--max-nodes", "2", "--dry-run")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("args, message", [
    (["--profile", "huge"], "unknown profile 'huge'"),
    (["--profile", "quick", "--figures", "fig6", "--max-nodes", "2"],
     "no point of fig6 fits 2 client nodes"),
    (["--max-nodes", "0"], "--max-nodes must be at least 1"),
    (["--figures", "fig10"], "unknown figure 'fig10'"),
    (["--modes", "nfs"], "unknown mode 'nfs'"),
    (["--modes", "writethrough", "--client-args", "weakwriteback=--no-xattr"],
     "want MODE=ARGS with MODE one of writethrough"),
    (["--modes", "writethrough", "--manager-args", "writethrough"],
     "--manager-args 'writethrough': want MODE=ARGS"),
])
def test_bad_arguments_are_refused(args, message):
    r = reproduce(*args, "--dry-run")
    assert r.returncode == 2
    assert message in r.stderr


def test_a_results_directory_that_cannot_be_made_is_refused_in_one_line(tmp_path: Path):
    checker_path()
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("")
    r = reproduce("--profile", "smoke", "--modes", "writethrough", "--figures", "consistency",
                  "--out", str(in_the_way), "--run", "r")
    assert r.returncode == 2
    assert f"cannot create the results directory {in_the_way}/r" in r.stderr
    assert "Traceback" not in r.stderr


def test_manager_args_reach_the_lease_managers(tmp_path: Path):
    require_fuse()
    require_binaries("storage", "writethrough", "lease-manager")
    # A flag the manager refuses stops the run at start-up, with the
    # manager's own complaint: the flags reached the manager's command line.
    r = reproduce("--profile", "smoke", "--modes", "writethrough", "--figures", "consistency",
                  "--out", str(tmp_path), "--run", "bad-manager",
                  "--manager-args", "writethrough=--no-such-manager-flag")
    assert r.returncode != 0
    assert "not expected: --no-such-manager-flag" in r.stdout + r.stderr
    manifest = json.loads((tmp_path / "bad-manager" / "manifest.json").read_text())
    assert manifest["manager_args"] == {"writethrough": ["--no-such-manager-flag"]}


def test_dfuse_without_the_module_is_refused():
    if os.path.exists("/dev/dfuse"):
        pytest.skip("dfuse.ko is loaded here")
    r = reproduce("--modes", "dfuse,writethrough", "--dry-run")
    assert r.returncode == 2
    assert "dfuse.ko" in r.stderr and "VM" in r.stderr


def test_smoke_run_writes_every_output_and_the_figures(tmp_path: Path):
    require_fuse()
    require_binaries("storage", *MODES)
    r = reproduce("--profile", "smoke", "--modes", ",".join(MODES), "--out", str(tmp_path),
                  "--run", "smoke")
    assert r.returncode == 0, r.stderr
    run = tmp_path / "smoke"
    assert "~" in r.stdout and "left" in r.stdout  # progress with time left

    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["modes"] == list(MODES) and manifest["profile"] == "smoke"
    for key in ("commit", "kernel", "date", "rtt_us", "network_emulation", "fio"):
        assert manifest.get(key) not in (None, ""), key

    n = len(MODES)
    fig6 = rows(run / "fig6.csv")
    assert len(fig6) == 10 * n
    assert {(r["pattern"], int(r["read_pct"])) for r in fig6} == {
        (p, x) for p in ("random", "sequential") for x in (0, 25, 50, 75, 100)}
    assert all(float(r["throughput_mib_s"]) > 0 and float(r["lat_mean_ms"]) > 0 for r in fig6)
    # The median node's MB/s times the nodes: of two nodes the median is the mean, so
    # the sum again (to the CSV's rounding).
    assert all(r["nodes"] == "2" and float(r["median_node_mb_s"]) > 0 and
               float(r["median_node_mb_s"]) == pytest.approx(float(r["throughput_mb_s"]),
                                                              rel=1e-3, abs=2e-3)
               for r in fig6)
    fig7 = rows(run / "fig7.csv")
    assert sorted({int(r["contention_pct"]) for r in fig7}) == [0, 25, 50, 75, 100]
    # Fig. 7's 0 % point is Fig. 6's random 50:50 run, measured once.
    for m in MODES:
        a = [r for r in fig6 if r["mode"] == m and r["pattern"] == "random" and r["read_pct"] == "50"]
        b = [r for r in fig7 if r["mode"] == m and r["contention_pct"] == "0"]
        assert a[0]["throughput_mb_s"] == b[0]["throughput_mb_s"]
    assert sorted({int(r["nodes"]) for r in rows(run / "fig8.csv")}) == [2, 3]
    fig9 = rows(run / "fig9.csv")
    assert len(fig9) == 6 * n and all(float(r["throughput_mb_s"]) > 0 for r in fig9)
    checks = rows(run / "consistency.csv")
    assert len(checks) == n
    for r in checks:
        if r["mode"] != "weakwriteback":
            assert r["non_linearizable"] == "0", r
    lat = rows(run / "lease_latency.csv")
    lease_modes = {r["mode"] for r in lat if r["metric"] == "lease.acquire"}
    assert lease_modes == {m for m in MODES if m != "weakwriteback"}

    raw = run / "raw" / "writethrough"
    fio_json = json.loads((raw / "fio-random-r50-c0-n2-node1.json").read_text())
    options = fio_json["global options"]
    assert options["rwmixread"] == "50"
    assert "/node1/f0:" in options["filename"] and "shared" not in options["filename"]
    assert (raw / "fileserver-c100-n2-node0.json").exists()
    assert (raw / "checker-0-n2.report.json").exists()

    d = subprocess.run([PYTHON, str(REPO / "plots" / "draw.py"), str(run)],
                       capture_output=True, text=True)
    assert d.returncode == 0, d.stderr
    for name in ("fig6", "fig7", "fig8", "fig9", "consistency", "lease_latency"):
        for ext in ("png", "pdf"):
            assert (run / "figures" / f"{name}.{ext}").stat().st_size > 0


def test_a_failing_point_stops_the_run_and_says_why(tmp_path: Path):
    require_fuse()
    require_binaries("storage", "weakwriteback")
    matrix = tmp_path / "matrix.toml"
    text = (REPO / "workloads" / "matrix.toml").read_text()
    # A fio job file that does not exist: fio fails on every node.
    matrix.write_text(text.replace('patterns = ["random", "sequential"]',
                                   'patterns = ["random", "nosuchpattern"]'))
    args = ["--profile", "smoke", "--modes", "weakwriteback", "--figures", "fig6",
            "--matrix", str(matrix), "--out", str(tmp_path)]
    r = reproduce(*args, "--run", "stop")
    assert r.returncode == 1
    manifest = json.loads((tmp_path / "stop" / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    assert "nosuchpattern" in manifest["error"]
    # The failed point keeps the end of every daemon's log, which the run dir loses.
    failed = [d for d in (tmp_path / "stop" / "raw" / "weakwriteback").glob("*.logs")]
    assert len(failed) == 1 and "nosuchpattern" in failed[0].name
    kept = sorted(p.name for p in failed[0].iterdir())
    assert "storage.log" in kept and "node0.log" in kept, kept
    assert (failed[0] / "node0.log").stat().st_size > 0
    # And what each daemon was waiting for then (their stats' "state").
    state = json.loads(failed[0].with_name(failed[0].name[:-len(".logs")] + ".state.json")
                       .read_text())
    assert "node0" in state and isinstance(state["node0"], dict), state

    r = reproduce(*args, "--run", "go-on", "--keep-going")
    assert r.returncode == 1
    manifest = json.loads((tmp_path / "go-on" / "manifest.json").read_text())
    assert manifest["status"].startswith("complete with 5 failed runs")
    assert len(rows(tmp_path / "go-on" / "failures.csv")) == 5
    assert len(rows(tmp_path / "go-on" / "fig6.csv")) == 5  # the random points


def test_repeated_points_give_the_median_and_the_spread(tmp_path: Path):
    require_fuse()
    require_binaries("storage", "writethrough", "weakwriteback")
    modes = ["writethrough", "weakwriteback"]
    # The smoke profile has a one-second warm-up, as the quick profile has one.
    r = reproduce("--profile", "smoke", "--modes", ",".join(modes), "--figures", "fig7",
                  "--repeats", "3", "--out", str(tmp_path),
                  "--run", "rep",
                  "--client-args", "weakwriteback=--no-xattr")
    assert r.returncode == 0, r.stderr
    run = tmp_path / "rep"
    # --client-args reached weakwriteback's daemons only: after the first
    # answer (ENOSYS) its kernels asked no xattr, writethrough's one per write.
    assert json.loads((run / "manifest.json").read_text())["client_args"] == \
        {"weakwriteback": ["--no-xattr"]}
    getxattrs = {m: sum(json.loads(p.read_text()).get("counters", {}).get("fuse.getxattr", 0)
                        for p in (run / "raw" / m).glob("*.stats.json")) for m in modes}
    assert getxattrs["weakwriteback"] <= 2 < 100 < getxattrs["writethrough"], getxattrs
    assert "x 3 = 30 runs" in r.stdout
    reps = rows(run / "repetitions.csv")
    assert len(reps) == 5 * 2 * 3
    # The modes take turns: at a point, a different mode goes first in each repetition.
    firsts = {}
    for x in reps:
        firsts.setdefault((x["point"], x["repetition"]), x["mode"])
    for point in {x["point"] for x in reps}:
        assert len({firsts[(point, str(k))] for k in (1, 2, 3)}) == 2, point
    fig7 = rows(run / "fig7.csv")
    assert len(fig7) == 5 * 2
    for f in fig7:
        mine = sorted(float(x["throughput_mb_s"]) for x in reps
                      if x["mode"] == f["mode"] and x["point"] ==
                      f"fio-random-r50-c{f['contention_pct']}-n2")
        assert f["repeats"] == "3" and len(mine) == 3
        assert float(f["throughput_mb_s"]) == pytest.approx(mine[1], abs=1e-3)
        assert (float(f["throughput_mb_s_min"]), float(f["throughput_mb_s_max"])) == \
            pytest.approx((mine[0], mine[2]), abs=1e-3)
        for k in (1, 2, 3):
            stem = f"fio-random-r50-c{f['contention_pct']}-n2-rep{k}"
            assert (run / "raw" / f["mode"] / f"{stem}-node1.json").exists()
            assert (run / "raw" / f["mode"] / f"{stem}-node1.fsync.json").exists()
            # The warm-up ran whole, in the measured job's fio process, and is kept apart.
            raw = run / "raw" / f["mode"]
            warmup = json.loads((raw / f"{stem}-node1.warmup.json").read_text())["jobs"]
            measured = json.loads((raw / f"{stem}-node1.json").read_text())["jobs"]
            assert [j["jobname"] for j in warmup] == ["warmup"]
            assert [j["jobname"] for j in measured] == ["random"]
            assert warmup[0]["job_runtime"] >= 0.9 * 2 * 1000  # 2 threads x 1 s
            # Every file read in full before the warm-up.
            primed = json.loads((run / "raw" / f["mode"] / f"{stem}-node1.prime.json").read_text())
            assert primed["bytes"] and set(primed["bytes"].values()) == {64 * 1024}
