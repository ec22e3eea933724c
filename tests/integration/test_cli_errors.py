"""Every daemon fails fast and clearly on bad input (ARCHITECTURE section 13).

A clear error: exit status > 0 (not a crash by signal), within a timeout, a
short message, and a line that names the problem (the offending path, address
or flag).  ``--help`` exits 0 and documents the main options.  A client that
fails must not leave a mount behind.
"""

import os
import subprocess

import pytest

import dfuse_cluster as dc
from conftest import MODES, require_binaries, require_fuse

TIMEOUT = 30
CLIENTS = MODES


def run(cmd, timeout=TIMEOUT) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([str(c) for c in cmd], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{cmd} hung: no exit within {timeout}s (output so far: {e.stderr!r})")


def assert_clear_error(r: subprocess.CompletedProcess, *needles: str) -> None:
    """Non-zero exit, no crash, short output, and a line naming the problem."""
    out = (r.stderr + r.stdout).strip()
    assert r.returncode > 0, f"exit status {r.returncode} (want > 0; < 0 is a crash): {out!r}"
    assert out, "no message at all"
    lines = out.splitlines()
    assert len(lines) <= 12, f"{len(lines)} lines of output for a simple error:\n{out}"
    for bad in ("Traceback", "terminate called", "Aborted", "Segmentation", "core dumped", "what():"):
        assert bad not in out, f"looks like a crash, not a clear error:\n{out}"
    lowered = [ln.lower() for ln in lines]
    assert any(all(n.lower() in ln for n in needles) for ln in lowered), \
        f"no line names the problem ({' + '.join(needles)}):\n{out}"


@pytest.fixture
def storage_bin():
    return require_binaries("storage")["storage"]


@pytest.fixture(params=CLIENTS)
def client_bin(request):
    return require_binaries(request.param)[request.param]


@pytest.fixture
def running_storage(workdir, storage_bin):
    """A storage service on a free port; yields its address."""
    export = workdir / "export"
    export.mkdir()
    port_file = workdir / "port"
    p = subprocess.Popen([storage_bin, "--plaintext", "--export", export, "--listen", "127.0.0.1:0",
                          "--state-dir", workdir / "state", "--port-file", port_file],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(300):
            if port_file.exists() and port_file.read_text().strip():
                break
            if p.poll() is not None:
                pytest.fail(f"storage exited: {p.stdout.read()}")
            import time
            time.sleep(0.05)
        else:
            pytest.fail("storage did not write its port file")
        yield f"127.0.0.1:{int(port_file.read_text())}"
    finally:
        dc.stop_pid(p.pid, popen=p)


# ---- help


def test_storage_help(storage_bin):
    r = run([storage_bin, "--help"])
    assert r.returncode == 0, r.stderr
    for opt in ("--export", "--listen", "--state-dir", "--port-file"):
        assert opt in r.stdout, f"{opt} not in --help output"


def test_client_help(client_bin):
    r = run([client_bin, "--help"])
    assert r.returncode == 0, r.stderr
    for opt in ("-o", "--stats", "--cache-size", "--emulated-rtt-us"):
        assert opt in r.stdout, f"{opt} not in --help output"


# ---- storage


def test_storage_missing_export(storage_bin, workdir):
    missing = workdir / "no-such-export"
    r = run([storage_bin, "--plaintext", "--export", missing, "--listen", "127.0.0.1:0", "--state-dir", workdir / "st"])
    assert_clear_error(r, str(missing))


def test_storage_export_is_a_file(storage_bin, workdir):
    f = workdir / "afile"
    f.write_text("x")
    r = run([storage_bin, "--plaintext", "--export", f, "--listen", "127.0.0.1:0", "--state-dir", workdir / "st"])
    assert_clear_error(r, str(f))


def test_storage_unknown_flag(storage_bin, workdir):
    r = run([storage_bin, "--plaintext", "--export", workdir / "e", "--listen", "127.0.0.1:0", "--no-such-flag"])
    assert_clear_error(r, "no-such-flag")


def test_storage_bad_listen_address(storage_bin, workdir):
    export = workdir / "export"
    export.mkdir()
    r = run([storage_bin, "--plaintext", "--export", export, "--listen", "not-an-address", "--state-dir", workdir / "st"])
    assert_clear_error(r, "not-an-address")


def test_storage_port_in_use(storage_bin, workdir, running_storage):
    """A second server on a busy port must fail, not share it (gRPC enables SO_REUSEPORT by default)."""
    export2 = workdir / "export2"
    export2.mkdir()
    r = run([storage_bin, "--plaintext", "--export", export2, "--listen", running_storage, "--state-dir", workdir / "st2"],
            timeout=10)
    assert_clear_error(r, running_storage.rsplit(":", 1)[1])


# ---- clients


def test_client_unreachable_storage(client_bin, workdir):
    require_fuse()
    mnt = workdir / "mnt"
    mnt.mkdir()
    try:
        r = run([client_bin, "--plaintext", "127.0.0.1:1", mnt])
        assert_clear_error(r, "127.0.0.1:1")
    finally:
        left = dc.mount_fstype(mnt)
        dc.unmount(mnt)
    assert left is None, f"failed client left a {left} mount behind"


def test_client_missing_mountpoint(client_bin, workdir, running_storage):
    require_fuse()
    missing = workdir / "no-such-mnt"
    r = run([client_bin, "--plaintext", running_storage, missing])
    assert_clear_error(r, str(missing))


def test_client_unknown_flag(client_bin, workdir):
    mnt = workdir / "mnt"
    mnt.mkdir()
    r = run([client_bin, "--no-such-flag", "127.0.0.1:1", mnt])
    assert_clear_error(r, "no-such-flag")
    assert dc.mount_fstype(mnt) is None


def test_client_bad_flag_value(client_bin, workdir):
    mnt = workdir / "mnt"
    mnt.mkdir()
    r = run([client_bin, "--cache-size", "lots", "127.0.0.1:1", mnt])
    assert_clear_error(r, "lots")
    assert dc.mount_fstype(mnt) is None
    r = run([client_bin, "--plaintext", "--max-dirty-ratio", "101", "127.0.0.1:1", mnt])
    assert_clear_error(r, "max-dirty-ratio")
    assert dc.mount_fstype(mnt) is None


def test_client_missing_arguments(client_bin):
    r = run([client_bin])
    assert r.returncode > 0, f"exit status {r.returncode} without arguments"
    assert (r.stderr + r.stdout).strip(), "no message when arguments are missing"


def test_client_malformed_storage_address(client_bin, workdir):
    mnt = workdir / "mnt"
    mnt.mkdir()
    r = run([client_bin, "no-port-here", mnt])
    assert_clear_error(r, "no-port-here")
    assert dc.mount_fstype(mnt) is None


def test_dfuse_refuses_to_start_without_its_module(workdir):
    """Without dfuse.ko the dfuse daemon says so, and how to get it."""
    if os.path.exists("/dev/dfuse"):
        pytest.skip("dfuse.ko is loaded here")
    binary = require_binaries("dfuse")["dfuse"]
    mnt = workdir / "mnt"
    mnt.mkdir()
    r = run([binary, "--plaintext", "--lease-manager", "127.0.0.1:1", "127.0.0.1:1", mnt])
    assert_clear_error(r, "/dev/dfuse")
    assert "dfuse.ko" in r.stderr and "make kernel" in r.stderr and "dfuse-vm" in r.stderr
    assert dc.mount_fstype(mnt) is None


def test_other_modes_name_a_missing_fuse_device(workdir):
    binary = require_binaries("writethrough")["writethrough"]
    mnt = workdir / "mnt"
    mnt.mkdir()
    r = run([binary, "--plaintext", "--fuse-device", "/nonexistent/dev", "127.0.0.1:1", mnt])
    assert_clear_error(r, "/nonexistent/dev")


# ---- transport: TLS unless --plaintext, and plain text only on loopback


def test_daemons_want_tls_or_an_explicit_plaintext(storage_bin, client_bin, workdir):
    export = workdir / "export"
    export.mkdir()
    r = run([storage_bin, "--export", export, "--listen", "127.0.0.1:0", "--state-dir",
             workdir / "st"])
    assert_clear_error(r, "--tls-ca", "--plaintext")
    mnt = workdir / "mnt"
    mnt.mkdir()
    r = run([client_bin, "127.0.0.1:1", mnt])
    assert_clear_error(r, "--tls-ca", "--plaintext")
    assert dc.mount_fstype(mnt) is None
    lease_manager = require_binaries("lease-manager")["lease-manager"]
    r = run([lease_manager, "--listen", "127.0.0.1:0", "--epoch", "1"])
    assert_clear_error(r, "--tls-ca", "--plaintext")


def test_plaintext_is_refused_off_loopback(storage_bin, client_bin, workdir):
    export = workdir / "export"
    export.mkdir()
    r = run([storage_bin, "--plaintext", "--export", export, "--listen", "0.0.0.0:0",
             "--state-dir", workdir / "st"])
    assert_clear_error(r, "plain text refused on 0.0.0.0:0")
    mnt = workdir / "mnt"
    mnt.mkdir()
    r = run([client_bin, "--plaintext", "192.0.2.1:7000", mnt])
    assert_clear_error(r, "plain text refused on 192.0.2.1:7000")
    assert dc.mount_fstype(mnt) is None
    lease_manager = require_binaries("lease-manager")["lease-manager"]
    r = run([lease_manager, "--plaintext", "--listen", "0.0.0.0:0", "--epoch", "1"])
    assert_clear_error(r, "plain text refused on 0.0.0.0:0")
    r = run([lease_manager, "--plaintext", "--listen", "127.0.0.1:0", "--etcd",
             "192.0.2.1:2379", "--advertise", "127.0.0.1:1"])
    assert_clear_error(r, "plain text refused on 192.0.2.1:2379")
