"""Shared fixtures for the DFUSE integration tests.

Binaries come from $DFUSE_BUILD_DIR (set by CTest) or REPO/build; a test whose
binaries are missing is skipped with the path it looked for.  Every cluster
runs under a fresh /tmp/dfuse-it-* directory and is torn down (unmounted,
processes stopped) even when the test fails; the directory is removed only
when nothing is mounted below it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "tools"))
sys.path.insert(0, str(HERE))

import dfuse_cluster as dc  # noqa: E402

def _modes() -> tuple:
    """Modes under test: $DFUSE_TEST_MODES, else every mode this machine runs.

    dfuse needs dfuse.ko (/dev/dfuse): on a stock kernel it runs in the VM
    testbed (tests/vm), which sets DFUSE_TEST_MODES to all three.
    """
    env = os.environ.get("DFUSE_TEST_MODES")
    if env:
        return tuple(m for m in env.split(",") if m)
    return tuple(dc.available_modes())


MODES = _modes()
STRONG_MODES = tuple(m for m in MODES if m in dc.LEASE_MODES)


def modes_of(*modes: str) -> tuple:
    """Those of ``modes`` under test: a test written for some modes runs only
    where they are (the VM suite leaves out what the host covers on stock FUSE)."""
    return tuple(m for m in modes if m in MODES)


only_if_weakwriteback = pytest.mark.skipif(
    "weakwriteback" not in MODES, reason="weakwriteback is not under test (DFUSE_TEST_MODES)")


def require_dfuse_module() -> None:
    if not os.path.exists(dc.DFUSE_DEVICE):
        pytest.skip("dfuse.ko is not loaded (/dev/dfuse missing): run in the VM testbed")


def unprivileged_python(code: str, *args: str) -> subprocess.Popen:
    """Starts ``python3 -c code args...`` as uid and gid 1000 with no other groups
    (root would pass every permission check), text pipes on stdin and stdout."""
    def drop():
        os.setgroups([])
        os.setgid(1000)
        os.setuid(1000)
    return subprocess.Popen([sys.executable, "-c", code, *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, preexec_fn=drop)


def _diff_seeds() -> list[int]:
    """Seeds of the differential test: $DFUSE_DIFF_SEEDS, else two new ones per run."""
    env = os.environ.get("DFUSE_DIFF_SEEDS")
    if env:
        return [int(s) for s in env.replace(",", " ").split()]
    import time
    base = time.time_ns() % 1_000_000_007
    return [base, base + 1]


DIFF_SEEDS = _diff_seeds()


def build_dir() -> Path:
    return dc.find_build_dir()


def require_binaries(*names: str) -> dict:
    """Paths of daemons ``names`` ("storage", "writethrough", ...); skip if any is missing."""
    paths = {n: dc.binary_path(build_dir(), n) for n in names}
    missing = [str(p) for p in paths.values() if not (p.is_file() and os.access(p, os.X_OK))]
    if missing:
        pytest.skip("binary not built: " + ", ".join(missing))
    return paths


def checker_path() -> Path:
    """dfuse-checker (workloads/consistency); skip the test if it is not built."""
    path = build_dir() / "workloads" / "consistency" / "dfuse-checker"
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.skip(f"dfuse-checker not built: {path}")
    return path


def require_fuse() -> None:
    if os.geteuid() != 0:
        pytest.skip("integration tests need root (FUSE mounts, namespaces)")
    if not os.path.exists("/dev/fuse"):
        pytest.skip("/dev/fuse is missing")


def _rundir_is_clear(path: str) -> bool:
    return not any(mp == path or mp.startswith(path + "/") for mp, _ in dc.list_mounts())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keeps each phase's report on the test item, for the fixtures' teardown."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _keep_failed_logs(request, d: str) -> None:
    """Copies the daemons' logs of a failed test to $DFUSE_KEEP_FAILED_LOGS.

    The VM suite sets it to a directory under the build tree: the guest's /tmp
    goes with the VM, and without the logs a failure seen once under load
    cannot be traced.
    """
    dest = os.environ.get("DFUSE_KEEP_FAILED_LOGS")
    rep = getattr(request.node, "rep_call", None)
    if not dest or rep is None or not rep.failed:
        return
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in request.node.nodeid)
    target = Path(dest) / name
    for logs in sorted(Path(d).glob("*/logs")):
        shutil.copytree(logs, target / logs.parent.name, dirs_exist_ok=True)
    print(f"[logs] daemons' logs of the failed test kept in {target}", flush=True)
    # CI shows only the console: the logs' last warnings and errors go there too.
    for log in sorted(target.glob("*/*.log")):
        lines = [ln.rstrip() for ln in log.open(errors="replace")
                 if ln.split(" ", 2)[1:2] in (["warning"], ["error"], ["critical"])]
        for ln in lines[-20:]:
            print(f"[logs] {log.parent.name}/{log.name}: {ln}", flush=True)


@pytest.fixture
def workdir(request):
    """A fresh temp directory under /tmp, removed afterwards if nothing is mounted in it."""
    d = tempfile.mkdtemp(prefix="dfuse-it-", dir="/tmp")
    yield Path(d)
    _keep_failed_logs(request, d)
    if _rundir_is_clear(d):
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def make_cluster(workdir):
    """Factory: ``make_cluster(mode, nodes=1, **kw)`` returns a started Cluster.

    Every cluster it made is brought down at teardown, and the test fails if a
    mount is left behind below the work directory.
    """
    require_fuse()
    made = []

    def factory(mode: str, nodes: int = 1, name: str = "c", **kw) -> dc.Cluster:
        require_binaries("storage", mode)
        kw.setdefault("net", os.environ.get("DFUSE_IT_NET", "none"))
        c = dc.Cluster(workdir / f"{name}{len(made)}", mode=mode, nodes=nodes,
                       progress=lambda m: print(f"[cluster] {m}", flush=True), **kw)
        made.append(c)
        c.up()
        return c

    yield factory
    anomalies = []
    for c in reversed(made):
        c.down()
        anomalies += c.anomalies
    left = [mp for mp, _ in dc.list_mounts() if mp.startswith(str(workdir) + "/")]
    for mp in left:
        dc.unmount(mp)
    assert not left, f"mounts left behind after teardown: {left}"
    # A daemon that cannot be stopped (had to have its FUSE connection aborted) is a bug.
    assert not anomalies, "daemons misbehaved while stopping:\n" + "\n".join(anomalies)


@pytest.fixture
def tmpfs_dir(workdir):
    """A private tmpfs mounted in the work directory (the reference file system)."""
    d = workdir / "tmpfs"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1g,mode=0755", "tmpfs", str(d)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        # Fall back to /dev/shm (also tmpfs) when mounting is not allowed.
        shm = Path(tempfile.mkdtemp(prefix="dfuse-ref-", dir="/dev/shm"))
        yield shm
        shutil.rmtree(shm, ignore_errors=True)
        return
    try:
        yield d
    finally:
        dc.unmount(d)


class BudgetExceeded(Exception):
    """The test file ran past $DFUSE_TEST_BUDGET seconds (see pytest_sessionstart)."""


def pytest_sessionstart(session):
    """Stops the run itself before CTest's timeout kills it.

    CTest ends a test that outlives its TIMEOUT with SIGKILL, so a hung test
    would leave its clusters mounted and its daemons running. With
    $DFUSE_TEST_BUDGET set (CTest sets it below TIMEOUT), the test running
    when the budget is spent fails where it waits, its fixtures tear its
    clusters down, and no further test starts.
    """
    budget = int(os.environ.get("DFUSE_TEST_BUDGET", "0"))
    if budget <= 0:
        return

    def expire(signum, frame):
        session.shouldstop = f"the test file ran past its {budget} s budget"
        raise BudgetExceeded(f"the test file ran past its {budget} s budget "
                             "(DFUSE_TEST_BUDGET); stopped here")

    signal.signal(signal.SIGALRM, expire)
    signal.alarm(budget)


def run_tool(cmd: list, timeout: float, grace: float = 60) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)`` for a
    tool that starts clusters of its own: however the wait ends (its timeout, the
    file's budget), the tool gets SIGINT and ``grace`` seconds to take them down
    before its process group is killed, so nothing stays mounted."""
    def own_group():
        os.setsid()
        # A shell that started us in the background may have left SIGINT
        # ignored, and Python then raises no KeyboardInterrupt for it.
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          preexec_fn=own_group) as p:
        try:
            out, err = p.communicate(timeout=timeout)
        except BaseException:
            os.killpg(p.pid, signal.SIGINT)
            try:
                out, err = p.communicate(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                out, err = p.communicate()
            print(f"{cmd[0]} interrupted; its output ended:\n{out[-4000:]}\n{err[-4000:]}")
            raise
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


def pytest_report_header(config):
    return [f"dfuse build dir: {build_dir()}",
            f"differential seeds: {','.join(map(str, DIFF_SEEDS))} (repeat with DFUSE_DIFF_SEEDS=...)"]
