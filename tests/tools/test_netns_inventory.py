"""tools/netns_hosts.py: the inventory written for namespace hosts, without namespaces."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from netns_hosts import HostsError, NetnsHosts  # noqa: E402

import pytest  # noqa: E402


def written(tmp_path: Path, host_vars: dict) -> dict:
    hosts = NetnsHosts(tmp_path / "h", {"storage": ["st01"], "lease_managers": ["st01"],
                                        "etcd": ["st01"], "clients": ["c01", "c02"]},
                       host_vars=host_vars)
    hosts.root.mkdir()
    hosts._write_inventory()
    return yaml.safe_load(hosts.inventory.read_text())["all"]


def test_each_host_has_its_own_address_and_root(tmp_path):
    inv = written(tmp_path, {})
    clients = inv["children"]["clients"]["hosts"]
    assert clients["c01"]["ansible_host"] == "10.123.0.3"
    assert clients["c02"]["dfuse_root"] == str(tmp_path / "h" / "hosts" / "c02")
    assert inv["children"]["storage"]["hosts"]["st01"]["ansible_host"] == "10.123.0.2"
    assert inv["vars"]["dfuse_service_manager"] == "direct"


def test_variables_keep_their_value_and_type_whatever_they_hold(tmp_path):
    values = {"dfuse_ready_timeout": "300", "quoted": "it's \"both\"", "colon": "a: b",
              "template": "{{ dfuse_root }}/x", "flag": True, "count": 3}
    got = written(tmp_path, values)["vars"]
    assert {k: got[k] for k in values} == values


def test_an_unknown_group_is_refused(tmp_path):
    with pytest.raises(HostsError, match="unknown groups"):
        NetnsHosts(tmp_path / "h", {"client": ["c01"]})
