"""Mutual TLS on the client's links to storage and to the lease manager.

A cluster whose storage service and lease manager require certificates from
the cluster CA (tools/dfuse-certs) serves clients that present one; a client
with no certificate, with one from another CA or with an expired one cannot
mount. (That the lease manager refuses such a client's session on its own is
tests/unit/lease/tls_test.cc.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import dfuse_cluster as dc

CERTS = Path(__file__).resolve().parents[2] / "tools" / "dfuse-certs"


def certs(directory: Path, *args: str) -> None:
    subprocess.run([sys.executable, str(CERTS), *args], check=True, capture_output=True,
                   text=True)


def tls_flags(d: Path, name: str, ca: Path | None = None) -> list[str]:
    return ["--tls-ca", str(ca or d / "ca.crt"), "--tls-cert", str(d / f"{name}.crt"),
            "--tls-key", str(d / f"{name}.key")]


@pytest.fixture
def pki(workdir) -> Path:
    """The cluster CA with the services' and a client's certificates, another CA with a
    client certificate, and an expired client certificate from the cluster CA."""
    d, other = workdir / "tls", workdir / "tls-other"
    certs(d, "ca", str(d))
    for name in ("storage", "manager"):
        certs(d, "issue", str(d), name, "--ip", "127.0.0.1")
    certs(d, "issue", str(d), "client")
    certs(d, "issue", str(d), "expired", "--not-before", "2020-01-01", "--not-after",
          "2020-02-01")
    certs(other, "ca", str(other), "--name", "another CA")
    certs(other, "issue", str(other), "stranger")
    return d


def tls_cluster(make_cluster, pki: Path, nodes: int = 2):
    return make_cluster("writethrough", nodes=nodes,
                        storage_args=tls_flags(pki, "storage"),
                        lease_manager_args=tls_flags(pki, "manager"),
                        client_args=tls_flags(pki, "client"))


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


def test_clients_with_the_cluster_certificate_are_served(make_cluster, pki):
    c = tls_cluster(make_cluster, pki)
    (c.mount(0) / "f").write_bytes(b"over TLS")
    assert (c.mount(1) / "f").read_bytes() == b"over TLS"


@pytest.mark.parametrize("who", ["no certificate", "another CA", "expired"])
def test_a_client_without_a_valid_certificate_cannot_mount(make_cluster, pki, who, workdir):
    c = tls_cluster(make_cluster, pki, nodes=1)
    flags = {"no certificate": [],
             "another CA": tls_flags(workdir / "tls-other", "stranger"),
             "expired": tls_flags(pki, "expired")}[who]
    rc, err = try_mount(c, workdir / "intruder", flags)
    assert rc != 0
    assert "storage" in err.lower(), err[-500:]


def test_tls_files_are_checked_before_anything_starts(make_cluster, pki, workdir):
    c = tls_cluster(make_cluster, pki, nodes=1)
    missing = workdir / "missing.crt"
    rc, err = try_mount(c, workdir / "m", ["--tls-ca", str(missing), "--tls-cert",
                                           str(pki / "client.crt"), "--tls-key",
                                           str(pki / "client.key")])
    assert rc != 0 and "missing.crt" in err, err[-500:]
    not_pem = workdir / "not-a-cert.crt"
    not_pem.write_text("hello\n")
    rc, err = try_mount(c, workdir / "m", ["--tls-ca", str(not_pem), "--tls-cert",
                                           str(pki / "client.crt"), "--tls-key",
                                           str(pki / "client.key")])
    assert rc != 0 and "PEM" in err, err[-500:]
