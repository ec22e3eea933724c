"""The evaluation matrix (workloads/matrix.toml) expanded into points to run.

A point is one measurement: a workload (fio job, personality, or checker) on
a number of nodes. Figures that need the same measurement share its point;
the runner executes each point once for every mode.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from typing import Optional

REPO_ROOT = Path(__file__).resolve().parent.parent
MATRIX = REPO_ROOT / "workloads" / "matrix.toml"
FIO_JOBS = REPO_ROOT / "workloads" / "fio"

_SIZE = re.compile(r"^(\d+)([kKmMgG]?)$")


def parse_size(text: str) -> int:
    """'64k' -> 65536 (fio's binary units)."""
    m = _SIZE.match(str(text).strip())
    if not m:
        raise ValueError(f"bad size {text!r}: use a number with an optional k, M or G")
    return int(m.group(1)) << {"": 0, "k": 10, "m": 20, "g": 30}[m.group(2).lower()]


@dataclasses.dataclass(frozen=True)
class Point:
    kind: str                       # "fio", "personality" or "checker"
    nodes: int
    pattern: str = ""               # fio: random | sequential
    read_pct: int = 0               # fio
    contention_pct: int = 0         # fio, personality
    personality: str = ""           # personality
    run: int = 0                    # checker: repetition

    @property
    def key(self) -> str:
        """A file-name-safe name, unique within a run."""
        if self.kind == "fio":
            return f"fio-{self.pattern}-r{self.read_pct}-c{self.contention_pct}-n{self.nodes}"
        if self.kind == "personality":
            return f"{self.personality}-c{self.contention_pct}-n{self.nodes}"
        return f"checker-{self.run}-n{self.nodes}"


@dataclasses.dataclass
class Matrix:
    profile_name: str
    profile: dict
    figures: dict[str, list[Point]]   # figure -> its points, in order

    def points(self) -> list[Point]:
        """Every distinct point, in first-use order."""
        seen: dict[Point, None] = {}
        for pts in self.figures.values():
            for p in pts:
                seen.setdefault(p)
        return list(seen)

    def figures_of(self, point: Point) -> list[str]:
        return [f for f, pts in self.figures.items() if point in pts]

    def leave_out_above(self, max_nodes: int) -> list[Point]:
        """Drops the points that need more than ``max_nodes`` client nodes
        (and figures left with none); returns the points dropped."""
        dropped = [p for p in self.points() if p.nodes > max_nodes]
        self.figures = {f: kept for f, pts in self.figures.items()
                        if (kept := [p for p in pts if p.nodes <= max_nodes])}
        return dropped


PROFILE_KEYS = {
    "nodes", "threads", "files_per_node", "file_size", "bs", "runtime", "ramp", "scale_nodes",
    "personality_threads", "personality_runtime", "personality_files", "checker_nodes",
    "checker_ops", "checker_runs", "rtt_us", "repeats",
}


def load(profile: str, figures: Optional[list[str]] = None,
         path: Path = MATRIX) -> Matrix:
    """Reads the matrix; raises ValueError naming what is wrong."""
    with open(path, "rb") as f:
        doc = tomllib.load(f)
    profiles, figs = doc.get("profiles", {}), doc.get("figures", {})
    if profile not in profiles:
        raise ValueError(f"unknown profile {profile!r} (have: {', '.join(profiles)})")
    prof = profiles[profile]
    missing = PROFILE_KEYS - prof.keys()
    if missing:
        raise ValueError(f"profile {profile!r} lacks {', '.join(sorted(missing))}")
    if not isinstance(prof["repeats"], int) or prof["repeats"] < 1:
        raise ValueError(f"profile {profile!r}: repeats must be a whole number, at least 1")
    contended = prof.get("contended_runtime")
    if contended is not None and (not isinstance(contended, (int, float)) or
                                  isinstance(contended, bool) or contended <= 0):
        raise ValueError(f"profile {profile!r}: contended_runtime must be a number of "
                         "seconds above 0")
    if prof["files_per_node"] % 4:
        raise ValueError("files_per_node must be a multiple of 4 (25 % contention steps)")
    parse_size(prof["file_size"])
    wanted = figures or list(figs)
    for f in wanted:
        if f not in figs:
            raise ValueError(f"unknown figure {f!r} (have: {', '.join(figs)})")
    return Matrix(profile, prof, {f: _expand(f, figs[f], prof) for f in wanted})


def _expand(name: str, fig: dict, prof: dict) -> list[Point]:
    kind = fig.get("kind")
    if kind == "fio":
        nodes = prof["scale_nodes"] if fig.get("nodes") == "scale_nodes" else [prof["nodes"]]
        return [Point("fio", n, pattern=pat, read_pct=r, contention_pct=c)
                for n in nodes for pat in fig["patterns"] for r in fig["read_pct"]
                for c in fig["contention_pct"]]
    if kind == "personality":
        return [Point("personality", prof["nodes"], personality=p, contention_pct=c)
                for p in fig["personalities"] for c in fig["contention_pct"]]
    if kind == "checker":
        return [Point("checker", prof["checker_nodes"], run=i) for i in range(prof["checker_runs"])]
    raise ValueError(f"figure {name!r}: unknown kind {kind!r}")


def fio_files(mount: str, node: int, files_per_node: int, contention_pct: int) -> list[str]:
    """Node `node`'s fio working set: the shared files first, then its own."""
    shared = files_per_node * contention_pct // 100
    return ([f"{mount}/shared/f{k}" for k in range(shared)] +
            [f"{mount}/node{node}/f{k}" for k in range(shared, files_per_node)])


def fio_job(pattern: str) -> Path:
    return FIO_JOBS / f"{pattern}.fio"


def fio_runtime(point: Point, prof: dict) -> float:
    """Seconds a fio point is measured: the profile's ``contended_runtime``, when it has
    one, at a point with contention (its throughput comes from a few hundred lease
    hand-offs, results/repeatability/), else ``runtime``."""
    if point.contention_pct > 0:
        return prof.get("contended_runtime", prof["runtime"])
    return prof["runtime"]


def point_seconds(point: Point, prof: dict) -> float:
    """What the point itself takes, before the runner's overhead."""
    if point.kind == "fio":
        return fio_runtime(point, prof) + prof["ramp"]
    if point.kind == "personality":
        return prof["personality_runtime"]
    return prof["checker_ops"] / 200.0  # a rough rate under emulation; refined while running
