"""Mutual TLS on the client's links to storage and to the lease manager.

A cluster whose storage service and lease manager require certificates from
the cluster CA (tools/dfuse-certs) serves clients that present one; a client
with no certificate, with one from another CA or with an expired one cannot
mount. (That the lease manager refuses such a client's session on its own is
tests/unit/tls/tls_test.cc.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import dfuse_cluster as dc

CERTS = Path(__file__).resolve().parents[2] / "tools" / "dfuse-certs"


def certs(*args: str) -> None:
    subprocess.run([sys.executable, str(CERTS), *args], check=True, capture_output=True,
                   text=True)


def tls_flags(d: Path, name: str) -> list[str]:
    return ["--tls-ca", str(d / "ca.crt"), "--tls-cert", str(d / f"{name}.crt"),
            "--tls-key", str(d / f"{name}.key")]


@pytest.fixture
def stranger(workdir) -> Path:
    """Another CA with a client certificate of its own."""
    other = workdir / "tls-other"
    certs("ca", str(other), "--name", "another CA")
    certs("issue", str(other), "stranger")
    return other


def tls_cluster(make_cluster, nodes: int = 2):
    """A writethrough cluster with mutual TLS on every client link (its CA and
    certificates in c.tls_dir, made by the cluster tool)."""
    c = make_cluster("writethrough", nodes=nodes, tls=True)
    assert (c.tls_dir / "ca.crt").exists()
    return c


def try_mount(cluster, mountpoint: Path, flags: list[str], lease_manager: bool = True):
    """Runs a writethrough client in the foreground against ``cluster`` with ``flags``;
    returns (exit status, stderr) once it gave up (or unmounts it if it mounted)."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    cmd = [str(dc.binary_path(cluster.build_dir, "writethrough")), *flags,
           "--storage-timeout", "5"]
    if lease_manager:
        cmd += ["--lease-manager", ",".join(cluster.lease_manager_addresses)]
    cmd += [cluster.storage["address"], str(mountpoint)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        dc.unmount(mountpoint)
        _, err = proc.communicate(timeout=30)
        pytest.fail(f"a client with {flags} mounted: {err[-500:]}")
    assert dc.mount_fstype(mountpoint) is None
    return proc.returncode, err


def test_clients_with_the_cluster_certificate_are_served(make_cluster):
    c = tls_cluster(make_cluster)
    (c.mount(0) / "f").write_bytes(b"over TLS")
    assert (c.mount(1) / "f").read_bytes() == b"over TLS"
    for cmd in [c.storage["cmd"]] + [m["cmd"] for m in c.lease_managers] + \
            [n["cmd"] for n in c.clients]:
        assert "--tls-cert" in cmd, cmd


@pytest.mark.parametrize("who", ["no certificate", "another CA", "expired"])
def test_a_client_without_a_valid_certificate_cannot_mount(make_cluster, stranger, who,
                                                           workdir):
    c = tls_cluster(make_cluster, nodes=1)
    certs("issue", str(c.tls_dir), "expired", "--not-before", "2020-01-01",
          "--not-after", "2020-02-01")
    flags = {"no certificate": ["--plaintext"],
             "another CA": tls_flags(stranger, "stranger"),
             "expired": tls_flags(c.tls_dir, "expired")}[who]
    rc, err = try_mount(c, workdir / "intruder", flags)
    assert rc != 0
    assert "storage" in err.lower(), err[-500:]


def test_tls_files_are_checked_before_anything_starts(make_cluster, workdir):
    c = tls_cluster(make_cluster, nodes=1)
    pki = c.tls_dir
    missing = workdir / "missing.crt"
    rc, err = try_mount(c, workdir / "m", ["--tls-ca", str(missing), "--tls-cert",
                                           str(pki / "node0.crt"), "--tls-key",
                                           str(pki / "node0.key")])
    assert rc != 0 and "missing.crt" in err, err[-500:]
    not_pem = workdir / "not-a-cert.crt"
    not_pem.write_text("hello\n")
    rc, err = try_mount(c, workdir / "m", ["--tls-ca", str(not_pem), "--tls-cert",
                                           str(pki / "node0.crt"), "--tls-key",
                                           str(pki / "node0.key")])
    assert rc != 0 and "PEM" in err, err[-500:]
