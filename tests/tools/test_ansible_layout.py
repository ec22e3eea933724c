"""tools/ansible_cluster.py: the runner finds the roles' paths as the inventory sets them."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from ansible_cluster import AnsibleCluster, Inventory  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("ansible-playbook") is None,
                                reason="ansible-playbook is not installed (apt-get install ansible)")

# layout.yml only templates variables on the control machine: these hosts are never reached.
INVENTORY = """\
all:
  vars:
    dfuse_log_dir: /srv/dfuse-logs
  children:
    storage:
      hosts:
        st01: {ansible_host: 192.0.2.1, dfuse_root: /nodes/st01}
    lease_managers:
      hosts:
        st01:
    clients:
      hosts:
        c01: {ansible_host: 192.0.2.2, dfuse_root: /nodes/c01, dfuse_run_dir: /var/run/x}
        c02: {ansible_host: 192.0.2.3}
"""


@pytest.fixture(scope="module")
def inventory(tmp_path_factory) -> Inventory:
    path = tmp_path_factory.mktemp("inv") / "lab.yml"
    path.write_text(INVENTORY)
    return Inventory(path, progress=lambda msg: None,
                     extra_vars={"dfuse_bin_dir": "/usr/local/dfuse/bin"})


def test_paths_follow_each_hosts_root_and_mode(inventory):
    c = AnsibleCluster(inventory, mode="dfuse", nodes=2)
    assert c.mount(0) == "/nodes/c01/mnt/dfuse-dfuse"
    assert c.mount(1) == "/mnt/dfuse-dfuse"
    assert c.export_dir == "/nodes/st01/var/lib/dfuse/dfuse/export"
    assert c.fio_job("randwrite", 0) == "/nodes/c01/opt/dfuse/workloads/fio/randwrite.fio"
    assert AnsibleCluster(inventory, mode="weakwriteback", nodes=1).mount(0) == \
        "/nodes/c01/mnt/dfuse-weakwriteback"


def test_inventory_and_extra_variables_override_the_defaults(inventory):
    layout = inventory.layout("writethrough")
    assert {h: layout[h]["log_dir"] for h in ("st01", "c01", "c02")} == \
        dict.fromkeys(("st01", "c01", "c02"), "/srv/dfuse-logs")
    assert layout["c01"]["run_dir"] == "/var/run/x"
    assert layout["c02"]["run_dir"] == "/run/dfuse"
    c = AnsibleCluster(inventory, mode="writethrough", nodes=2)
    assert c.tool("checker", 1) == "/usr/local/dfuse/bin/dfuse-checker"
    assert c.tool("personality") == "/usr/local/dfuse/bin/dfuse-personality"
