#!/usr/bin/env python3
"""Draw every figure of a results run (tools/dfuse-reproduce output) into
RUN/figures/, PNG and PDF, and write RUN/summary.md (the ratios next to the
paper's). A figure whose CSV the run does not have is skipped with a note; a
figure script that fails makes the exit status 1.

    plots/draw.py results/<run>          one run
    plots/draw.py --all results          every run that has a manifest from dfuse-reproduce
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import consistency  # noqa: E402
import fig6  # noqa: E402
import fig7  # noqa: E402
import fig8  # noqa: E402
import fig9  # noqa: E402
import lease_latency  # noqa: E402
import summary  # noqa: E402

FIGURES = {"fig6": fig6, "fig7": fig7, "fig8": fig8, "fig9": fig9,
           "consistency": consistency, "lease_latency": lease_latency}


def draw_run(run: Path, out: Path | None = None) -> tuple[list[Path], list[str]]:
    """Returns the files written and the errors of figures that failed."""
    written, errors = [], []
    for name, module in FIGURES.items():
        try:
            written += module.draw(run, out or run / "figures")
        except common.MissingData as e:
            print(f"{run.name}: {name} skipped ({e})")
        except Exception:  # a broken figure must not hide the others
            errors.append(f"{run.name}: {name} failed:\n{traceback.format_exc()}")
    try:
        (run / "summary.md").write_text(summary.summarize(run))
        written.append(run / "summary.md")
    except Exception:
        errors.append(f"{run.name}: summary.md failed:\n{traceback.format_exc()}")
    return written, errors


def reproduce_runs(results: Path) -> list[Path]:
    runs = []
    for manifest in sorted(results.glob("*/manifest.json")):
        try:
            if "figures" in json.loads(manifest.read_text()):
                runs.append(manifest.parent)
        except (OSError, json.JSONDecodeError):
            continue
    return runs


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", nargs="?", help="a run directory")
    p.add_argument("--all", metavar="RESULTS", help="draw every reproduce run under RESULTS")
    p.add_argument("--out", default=None, help="output directory (default: RUN/figures)")
    args = p.parse_args()
    if bool(args.run) == bool(args.all):
        p.error("give one run directory or --all RESULTS")
    runs = reproduce_runs(Path(args.all)) if args.all else [Path(args.run)]
    if args.run and not (runs[0] / "manifest.json").exists():
        p.error(f"{runs[0]} is not a results run (no manifest.json)")
    if not runs:
        print(f"no reproduce runs under {args.all}")
    failed = []
    for run in runs:
        written, errors = draw_run(run, Path(args.out) if args.out else None)
        for path in written:
            print(path)
        failed += errors
    for e in failed:
        print(e, file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
