"""tools/dfuse-reproduce: which failed cluster checks leave dfuse out and which stop the run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))
sys.path.insert(0, str(REPO / "tests" / "support"))
from dfuse_cluster import ClusterError  # noqa: E402
from runner_module import load_runner  # noqa: E402

runner = load_runner()


class FakeInventory:
    """check.yml fails for dfuse with ``dfuse_error``; records the playbooks run."""

    def __init__(self, dfuse_error: str) -> None:
        self.dfuse_error = dfuse_error
        self.playbooks: list[tuple] = []

    def check(self, mode: str) -> None:
        if mode == "dfuse" and self.dfuse_error:
            raise ClusterError(f"check.yml failed: fatal: [c01]: FAILED! => {self.dfuse_error}")

    def playbook(self, name: str, *args: str) -> str:
        self.playbooks.append((name, *args))
        return ""

    def describe(self) -> dict:
        return {"hosts": {}}


WRONG_KERNEL = ('{"msg": "c01 runs kernel 6.18.0 ' + runner.KERNEL_MISMATCH +
                ' 6.1.0-57-amd64: boot that Debian 12 kernel there"}')


def test_a_kernel_that_cannot_take_dfuse_ko_leaves_dfuse_out_and_says_why():
    inv, manifest = FakeInventory(WRONG_KERNEL), {}
    modes = ["dfuse", "writethrough", "weakwriteback"]
    desc = runner.cluster_plan(inv, modes, False, manifest)
    assert manifest["modes"] == modes == ["writethrough", "weakwriteback"]
    assert "6.1.0-57-amd64" in desc["modes_skipped"]["dfuse"]
    assert inv.playbooks == [("deploy.yml", "-e", "dfuse_mode=writethrough")]


@pytest.mark.parametrize("error", [
    '{"msg": "/x/build/kernel/dfuse.ko is missing on the control machine: run make kernel"}',
    '{"msg": "port 17000 on st01 is in use"}',
])
def test_any_other_failed_check_stops_the_run_before_deploying(error):
    inv = FakeInventory(error)
    with pytest.raises(ClusterError, match=error.split('"')[3][:20]):
        runner.cluster_plan(inv, ["dfuse", "writethrough"], False, {})
    assert inv.playbooks == []


def test_dfuse_asked_for_by_name_is_never_left_out():
    inv = FakeInventory(WRONG_KERNEL)
    with pytest.raises(ClusterError, match="built for"):
        runner.cluster_plan(inv, ["dfuse", "writethrough"], True, {})
