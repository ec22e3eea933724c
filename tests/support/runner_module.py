"""tools/dfuse-reproduce as a module, for tests of its functions (the script has no .py)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path

RUNNER = Path(__file__).resolve().parents[2] / "tools" / "dfuse-reproduce"


def load_runner():
    loader = importlib.machinery.SourceFileLoader("dfuse_reproduce", str(RUNNER))
    spec = importlib.util.spec_from_loader("dfuse_reproduce", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module
