"""Directory leases in dfuse.ko (kernel/directory-leases.md).

A READ lease on a directory keeps its names, found and not found, and its
attributes in the kernel, so a path walk asks the daemon nothing; a create,
unlink, rename or link on another node takes WRITE on the parents first,
which revokes it. Needs dfuse.ko: runs in the VM testbed (tests/vm).

* path walks: the daemon's LOOKUP and GETATTR counts stay flat over 100
  opens and stats of a file four directories deep (and do not without
  directory leases, 20 of each showing it, so the count can fail);
* names created, renamed and removed on one node are seen on the other at
  once, in both directions, with the other node's names cached;
* an exclusive create asks for the directory's WRITE lease at once (one
  revoke of the other node's lease, not two);
* a directory's link count and mode changed on one node are seen on the
  other (the mode by an unprivileged user, which root's permission bypass
  would hide);
* creates and unlinks in a directory ask the daemon for no attributes (and
  one GETATTR per round without directory leases, the control);
* a file's link count across nodes when a name is linked and removed, and
  when the name removed on B was renamed over on A first;
* both nodes removing a file that B's threads are writing, 30 times: no
  task waits for ever (the order of i_rwsem and the lease, lease.h).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest

from conftest import require_dfuse_module, unprivileged_python

DEPTH = 4  # a/b/c/d


@pytest.fixture(autouse=True)
def _needs_module():
    require_dfuse_module()


def counts(c, node=0):
    s = c.stats(node)["counters"]
    return s.get("fuse.lookup", 0), s.get("fuse.getattr", 0)


@pytest.mark.parametrize("dir_leases", ["true", "false"])
def test_path_walks_ask_the_daemon_nothing(make_cluster, dir_leases):
    c = make_cluster("dfuse", nodes=1, client_args=["--dir-leases", dir_leases])
    d = os.path.join(c.mount(0), "a/b/c/d")
    os.makedirs(d)
    with open(f"{d}/f", "wb") as f:
        f.write(b"x")
    os.stat(f"{d}/f")
    # Without directory leases the walks are only the control (every
    # component asks): fewer of them show it, at a fifth of the VM's time.
    opens = 100 if dir_leases == "true" else 20
    lookups, getattrs = counts(c)
    for _ in range(opens):
        os.close(os.open(f"{d}/f", os.O_RDONLY))
        assert not os.path.exists(f"{d}/missing")
    # Apart: a close makes the next stat(2) ask for the file's i_blocks
    # (fuse_flush), which is the file's business, not the walk's.
    for _ in range(opens):
        os.stat(f"{d}/f")
    lookups, getattrs = counts(c)[0] - lookups, counts(c)[1] - getattrs
    if dir_leases == "true":
        assert lookups <= DEPTH + 2 and getattrs <= DEPTH + 2, \
            f"{lookups} LOOKUPs and {getattrs} GETATTRs for {opens} walks"
    else:
        # The same walks without directory leases: every component asks.
        assert lookups >= opens * DEPTH, f"only {lookups} LOOKUPs without directory leases"


def test_names_changed_on_one_node_are_seen_on_the_other_at_once(make_cluster):
    c = make_cluster("dfuse", nodes=2)
    nodes = [c.mount(0), c.mount(1)]
    os.mkdir(f"{nodes[0]}/d")
    rng = random.Random(13)
    for i in range(60):
        a, b = nodes[i % 2], nodes[1 - i % 2]
        x, y = f"x{rng.randrange(10**6)}", f"y{rng.randrange(10**6)}"
        assert not os.path.exists(f"{b}/d/{x}")  # B caches the name as missing
        assert not os.path.exists(f"{b}/d/{y}")
        with open(f"{a}/d/{x}", "wb") as f:
            f.write(b"1")
        assert os.path.exists(f"{b}/d/{x}"), f"round {i}: B served a stale negative entry"
        os.rename(f"{a}/d/{x}", f"{a}/d/{y}")
        assert not os.path.exists(f"{b}/d/{x}"), f"round {i}: B still sees the old name"
        assert os.path.exists(f"{b}/d/{y}"), f"round {i}: B does not see the new name"
        os.unlink(f"{a}/d/{y}")
        assert not os.path.exists(f"{b}/d/{y}"), f"round {i}: B still sees a removed name"
    assert os.listdir(f"{nodes[0]}/d") == [] and os.listdir(f"{nodes[1]}/d") == []


def test_an_exclusive_create_takes_the_directory_for_writing_at_once(make_cluster):
    # The nodes take turns creating names in one directory. Each create's
    # lookup finds the directory's lease with the other node, which holds
    # it for writing: asking WRITE at once revokes it once (to NONE), where
    # asking READ for the lookup and then WRITE revoked it twice.
    c = make_cluster("dfuse", nodes=2)
    nodes = [c.mount(0), c.mount(1)]
    os.mkdir(f"{nodes[0]}/d")
    os.stat(f"{nodes[1]}/d")  # the root's WRITE lease moves to READ before counting
    rounds = 20
    revokes = 0
    for i in range(2 * rounds):
        me, other = i % 2, 1 - i % 2
        before = c.stats(other)["counters"].get("lease.revokes", 0)
        os.close(os.open(f"{nodes[me]}/d/n{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL))
        if i > 0:  # the first create finds no WRITE holder
            revokes += c.stats(other)["counters"].get("lease.revokes", 0) - before
    assert sorted(os.listdir(f"{nodes[1]}/d")) == sorted(f"n{i}" for i in range(2 * rounds))
    assert revokes == 2 * rounds - 1, f"{revokes} revokes for {2 * rounds - 1} creates"


@pytest.mark.parametrize("dir_leases", ["true", "false"])
def test_creates_and_unlinks_ask_no_attributes(make_cluster, dir_leases):
    # A create or unlink changes the directory's times, size and link
    # count, never its mode or owner: under its lease the next permission
    # check on it asks the daemon nothing. Without directory leases every
    # round asks (the control: the count can fail). With leases, neither
    # the open of the file just created (a check of no access) nor the
    # ctime of a file whose last name is gone costs a request.
    rounds = 20
    c = make_cluster("dfuse", nodes=1, client_args=["--dir-leases", dir_leases])
    d = os.path.join(c.mount(0), "d")
    os.mkdir(d)
    os.close(os.open(f"{d}/warm", os.O_WRONLY | os.O_CREAT))
    before = c.stats(0)["counters"]
    for i in range(rounds):
        os.close(os.open(f"{d}/f{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL))
        os.unlink(f"{d}/f{i}")
    after = c.stats(0)["counters"]
    getattrs, setattrs = (after.get(k, 0) - before.get(k, 0) for k in ("fuse.getattr", "fuse.setattr"))
    if dir_leases == "true":
        assert getattrs <= 2, f"{getattrs} GETATTRs for {rounds} creates and unlinks"
        assert setattrs <= 2, f"{setattrs} SETATTRs for {rounds} creates and unlinks"
    else:
        assert getattrs >= rounds, f"only {getattrs} GETATTRs without directory leases"
    assert os.listdir(d) == ["warm"]


def test_missing_names_are_cached(make_cluster):
    c = make_cluster("dfuse", nodes=1)
    m = c.mount(0)
    os.mkdir(f"{m}/d")
    assert not os.path.exists(f"{m}/d/nothing")
    lookups = counts(c)[0]
    for _ in range(50):
        assert not os.path.exists(f"{m}/d/nothing")
    assert counts(c)[0] == lookups, "a missing name was looked up again under the lease"


# Run as an unprivileged user: whether it may list the directory, before and
# after the other node's chmod.
_LIST_TWICE = """
import os, sys
def can_list():
    try:
        os.listdir(sys.argv[1])
        return "listed"
    except PermissionError:
        return "EACCES"
print(can_list(), flush=True)
sys.stdin.readline()
print(can_list(), flush=True)
"""


def test_directory_attributes_follow_the_other_node(make_cluster, workdir):
    c = make_cluster("dfuse", nodes=2)
    a, b = c.mount(0), c.mount(1)
    os.chmod(workdir, 0o711)
    os.chmod(c.export_dir, 0o755)
    os.mkdir(f"{a}/d", 0o755)
    links = os.stat(f"{b}/d").st_nlink
    os.mkdir(f"{a}/d/sub")
    assert os.stat(f"{b}/d").st_nlink == links + 1, "B kept the link count from before the mkdir"
    os.rmdir(f"{a}/d/sub")
    assert os.stat(f"{b}/d").st_nlink == links, "B kept the link count from before the rmdir"

    p = unprivileged_python(_LIST_TWICE, f"{b}/d")
    try:
        assert p.stdout.readline().strip() == "listed", "mode 755: B's user may list"
        os.chmod(f"{a}/d", 0o700)
        out, _ = p.communicate("go\n", timeout=60)
    finally:
        p.kill()
    assert out.split() == ["EACCES"], f"B used the mode from before A's chmod: {out!r}"


def test_link_counts_across_nodes(make_cluster):
    c = make_cluster("dfuse", nodes=2)
    a, b = c.mount(0), c.mount(1)
    with open(f"{a}/f", "wb") as f:
        f.write(b"f")
    assert os.stat(f"{b}/f").st_nlink == 1
    os.link(f"{a}/f", f"{a}/g")
    assert os.stat(f"{b}/f").st_nlink == 2
    assert os.stat(f"{b}/g").st_ino == os.stat(f"{b}/f").st_ino
    os.unlink(f"{a}/g")
    assert os.stat(f"{b}/f").st_nlink == 1
    assert not os.path.exists(f"{b}/g")

    # B knows x as the old file; A renames a new one over it and keeps it
    # open; B removes x, which is now A's new file.
    with open(f"{a}/x", "wb") as f:
        f.write(b"old")
    assert os.stat(f"{b}/x").st_size == 3
    with open(f"{a}/tmp", "wb") as f:
        f.write(b"newer")
    fd = os.open(f"{a}/tmp", os.O_RDONLY)
    try:
        os.rename(f"{a}/tmp", f"{a}/x")
        os.unlink(f"{b}/x")
        assert not os.path.exists(f"{a}/x")
        assert os.fstat(fd).st_nlink == 0, "A kept the link count of the file B removed"
        assert os.pread(fd, 10, 0) == b"newer"
    finally:
        os.close(fd)


# Each round: three threads write the file through node B while both nodes
# remove it at once, B a random moment after A. Prints the round it is in.
_REMOVE_WHILE_WRITING = r"""
import os, random, sys, threading, time
a, b, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(5)
def remove(path, delay):
    time.sleep(delay)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
for r in range(rounds):
    print(r, flush=True)
    with open(f"{a}/d/v{r}", "wb") as f:
        f.write(b"x" * 65536)
    fd = os.open(f"{b}/d/v{r}", os.O_WRONLY)
    stop = threading.Event()
    def write(seed):
        page, offsets = b"w" * 4096, random.Random(seed)
        while not stop.is_set():
            os.pwrite(fd, page, offsets.randrange(16) * 4096)
    writers = [threading.Thread(target=write, args=(i,)) for i in range(3)]
    for t in writers:
        t.start()
    time.sleep(0.05)
    removers = [threading.Thread(target=remove, args=(f"{a}/d/v{r}", 0)),
                threading.Thread(target=remove, args=(f"{b}/d/v{r}", rng.uniform(0, 0.02)))]
    for t in removers:
        t.start()
    for t in removers:
        t.join()
    stop.set()
    for t in writers:
        t.join()
    os.close(fd)
print("done", flush=True)
"""


def test_a_write_waiting_for_its_file_does_not_hold_up_a_removal(make_cluster):
    # An unlink holds the victim's i_rwsem while it waits for the leases of
    # the parent and the victim, in node-ID order. Node A's unlink holds the
    # parent's lease and waits for the file's, which node B must release;
    # had B's write(2)s entered the file's lease before waiting for its
    # i_rwsem, held by B's own unlink waiting for the parent's lease, the
    # release would wait for them and all three for ever. The writes take
    # i_rwsem first, so none waits for it inside the lease.
    rounds = 30
    c = make_cluster("dfuse", nodes=2)
    a, b = c.mount(0), c.mount(1)
    os.mkdir(f"{a}/d")
    p = subprocess.Popen([sys.executable, "-c", _REMOVE_WHILE_WRITING, a, b, str(rounds)],
                         stdout=subprocess.PIPE, text=True)
    try:
        out, _ = p.communicate(timeout=rounds * 5 + 60)
    except subprocess.TimeoutExpired as e:
        stacks = task_stacks(p.pid)
        for node in (0, 1):  # aborting the connections lets the tasks go
            c.abort_client(node)
        p.communicate(timeout=60)
        progress = e.stdout or b""  # bytes: what came before the time-out
        progress = (progress.decode() if isinstance(progress, bytes) else progress).split()
        pytest.fail(f"stuck in round {progress[-1] if progress else '?'} of {rounds}; "
                    f"the tasks:\n{stacks}")
    assert p.returncode == 0 and out.split()[-1:] == ["done"], out
    assert os.listdir(f"{a}/d") == [] and os.listdir(f"{b}/d") == []


def task_stacks(pid):
    """Every thread of process pid: its state and kernel stack."""
    stacks = []
    for tid in sorted(os.listdir(f"/proc/{pid}/task")):
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        with open(f"/proc/{pid}/task/{tid}/stack") as f:
            stacks.append(f"{tid} {state}\n{f.read()}")
    return "\n".join(stacks)
