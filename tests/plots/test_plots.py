"""The figure scripts (plots/) on small synthetic results.

The CSV columns come from the runner itself (tools/dfuse-reproduce), so a
change on either side that breaks the other fails here.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "plots"))
sys.path.insert(0, str(REPO / "tools"))
sys.path.insert(0, str(REPO / "tests" / "support"))

import draw  # noqa: E402
import paper  # noqa: E402
import summary  # noqa: E402
from runner_module import load_runner  # noqa: E402

runner = load_runner()
MODES = ("dfuse", "writethrough", "weakwriteback")
SPEED = {"dfuse": 1.6, "writethrough": 1.0, "weakwriteback": 1.8}


def write(path: Path, fields: list[str], rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def fio_row(fig, mode, pattern, read_pct, contention, nodes):
    mb = 50.0 * SPEED[mode] * nodes / 4 * (1 - contention / 200)
    return {"figure": fig, "mode": mode, "pattern": pattern, "read_pct": read_pct,
            "contention_pct": contention, "nodes": nodes, "threads_per_node": 4,
            "throughput_mib_s": mb / 1.048576, "throughput_mb_s": mb,
            "lat_mean_ms": 1.0 / SPEED[mode], "ops": 1000, "node_spread": 1.2}


@pytest.fixture
def run(tmp_path: Path) -> Path:
    """A complete synthetic run of every figure, all three modes."""
    d = tmp_path / "synthetic"
    d.mkdir()
    write(d / "fig6.csv", runner.FIO_FIELDS,
          [fio_row("fig6", m, p, r, 0, 4) for m in MODES for p in ("random", "sequential")
           for r in paper.READ_PCT])
    write(d / "fig7.csv", runner.FIO_FIELDS,
          [fio_row("fig7", m, "random", 50, c, 4) for m in MODES for c in paper.CONTENTION_PCT])
    write(d / "fig8.csv", runner.FIO_FIELDS,
          [fio_row("fig8", m, "random", 50, 50, n) for m in MODES for n in (2, 4, 8)])
    write(d / "fig9.csv", runner.PERSONALITY_FIELDS,
          [{"figure": "fig9", "mode": m, "personality": p, "contention_pct": c, "nodes": 4,
            "threads_per_node": 4, "throughput_mb_s": 100 * SPEED[m], "lat_mean_ms": 10 / SPEED[m],
            "ops": 500, "races": 3 if c else 0}
           for m in MODES for p in ("fileserver", "webserver", "netsfs") for c in (0, 100)])
    write(d / "consistency.csv", runner.CHECKER_FIELDS,
          [{"figure": "consistency", "mode": m, "run": i, "nodes": 2, "operations": 4000,
            "registers": 16, "violations": 9 if m == "weakwriteback" else 1,
            "non_linearizable": 9 if m == "weakwriteback" else 0, "torn_reads": 1,
            "local_torn_reads": 1,
            "unknown": 0, "seed": 7} for m in MODES for i in range(2)])
    write(d / "lease_latency.csv", runner.LATENCY_FIELDS,
          [{"mode": m, "point": "fio-random-r50-c50-n4", "figure": "fig7+fig8",
            "contention_pct": 50, "metric": metric, "le_us": 1 << b, "count": 10 + b}
           for m in ("dfuse", "writethrough") for metric in runner.LEASE_METRICS
           if m == "dfuse" or not metric.startswith("kernel") for b in range(6, 14)])
    (d / "manifest.json").write_text(json.dumps({"run": "synthetic", "figures": list(draw.FIGURES)}))
    return d


def is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_figure_is_drawn_as_png_and_pdf(run: Path):
    written, errors = draw.draw_run(run)
    assert errors == []
    names = sorted(p.name for p in written)
    assert names == sorted([f"{f}.{ext}" for f in draw.FIGURES for ext in ("png", "pdf")]
                           + ["summary.md"])
    for p in written:
        if p.suffix == ".md":
            continue
        assert p.stat().st_size > 5000, p
        if p.suffix == ".png":
            assert is_png(p)
        else:
            assert p.read_bytes()[:5] == b"%PDF-"


def test_each_script_runs_on_its_own(run: Path, tmp_path: Path):
    for name in draw.FIGURES:
        out = tmp_path / f"out-{name}"
        r = subprocess.run([sys.executable, str(REPO / "plots" / f"{name}.py"), str(run),
                            "--out", str(out)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert is_png(out / f"{name}.png")


def test_a_figure_the_run_lacks_is_skipped(run: Path):
    (run / "fig8.csv").unlink()
    r = subprocess.run([sys.executable, str(REPO / "plots" / "draw.py"), str(run)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "fig8 skipped" in r.stdout
    assert not (run / "figures" / "fig8.png").exists()
    assert (run / "figures" / "fig9.png").exists()


def test_a_broken_figure_fails(run: Path):
    # A column the figure needs is gone: the script must fail, loudly.
    rows = list(csv.DictReader(open(run / "fig7.csv")))
    fields = [f for f in runner.FIO_FIELDS if f != "throughput_mb_s"]
    write(run / "fig7.csv", fields, [{k: r[k] for k in fields} for r in rows])
    r = subprocess.run([sys.executable, str(REPO / "plots" / "draw.py"), str(run)],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert "fig7 failed" in r.stderr
    assert (run / "figures" / "fig6.png").exists()  # the others are still drawn


def test_all_draws_only_reproduce_runs(run: Path, tmp_path: Path):
    other = run.parent / "fio-bench"
    other.mkdir()
    (other / "manifest.json").write_text(json.dumps({"run": "fio-bench"}))
    assert draw.reproduce_runs(run.parent) == [run]


def test_the_ratio_panels_show_the_measured_ratio(run: Path):
    # The synthetic dfuse is 1.6x writethrough everywhere; the drawn line says so.
    import matplotlib.pyplot as plt
    import fig7
    captured = {}
    real_save = fig7.common.save

    def grab(fig, out, name):
        captured["fig"] = fig
        return real_save(fig, out, name)

    fig7.common.save = grab
    try:
        fig7.draw(run, run / "figures")
    finally:
        fig7.common.save = real_save
    right = captured["fig"].axes[1]
    lines = {ln.get_label(): ln.get_ydata() for ln in right.get_lines()}
    assert list(lines["dfuse / writethrough"]) == pytest.approx([1.6] * 5)
    assert list(lines["paper: DFUSE / WT+OCC"]) == pytest.approx(
        [d / w for d, w in zip(paper.FIG7["dfuse"], paper.FIG7["writethrough"])])
    plt.close("all")


def test_summary_states_the_measured_ratios_next_to_the_papers(run: Path):
    text = summary.summarize(run)
    headline = text[text.index("## Headline"):text.index("## Fig. 6")]
    # Synthetic dfuse: 1.6x writethrough's throughput, 1/1.6 of its latency;
    # 1.6 / 1.8 of weakwriteback's throughput.
    # writethrough: 1 / 1.8 of weakwriteback's (how strong the baseline is).
    assert ("| throughput | 1.60x (+60.0%) | 1.68x (+68.0%) | 0.89x (-11.1%) | 0.56x (-44.4%) |"
            in headline)
    assert "| mean latency | 0.62x (-37.5%) | 0.60x (-40.4%) |" in headline
    assert "| 16 |" not in text  # Fig. 8 lists only the node counts measured
    assert "| weakwriteback | 8000 | 18 of 32 |" in text


def test_summary_of_a_run_that_stopped_says_why_first(run: Path):
    assert "did not complete" not in summary.summarize(run)
    (run / "manifest.json").write_text(json.dumps({
        "run": "synthetic", "status": "complete with 1 failed runs (failures.csv)"}))
    assert "did not complete" not in summary.summarize(run)
    (run / "manifest.json").write_text(json.dumps({
        "run": "synthetic", "status": "failed",
        "error": "raw/writethrough/x-node7.json: a thread\noutlasted the runtime"}))
    text = summary.summarize(run)
    assert text.index("**This run did not complete** (failed): raw/writethrough/x-node7.json: "
                      "a thread outlasted the runtime.") < text.index("## Headline")


def test_summary_names_the_points_one_node_carried(run: Path):
    assert "## Points one node carried" not in summary.summarize(run)  # all even
    path = run / "fig7.csv"
    rows = list(csv.DictReader(open(path, newline="")))
    for r in rows:
        if r["mode"] == "dfuse" and r["contention_pct"] == "100":
            r["node_spread"] = "263.7"
    write(path, list(rows[0]), rows)
    text = summary.summarize(run)
    carried = text[text.index("## Points one node carried"):text.index("## Fig. 9")]
    assert "| fig7 | random 50:50 100% contention 4 nodes | dfuse | 264x |" in carried
    assert carried.count("| fig7 |") == 1


def test_contended_points_are_also_compared_by_their_median_node(run: Path):
    assert "by the median node" not in summary.summarize(run)  # a run from before
    path = run / "fig7.csv"
    rows = list(csv.DictReader(open(path, newline="")))
    for r in rows:
        r["median_node_mb_s"] = r["throughput_mb_s"]
        if r["mode"] == "dfuse" and r["contention_pct"] == "100":
            # One dfuse node never waited: the sum is 100 times writethrough's, the
            # median node 0.8 times.
            wt = next(float(w["throughput_mb_s"]) for w in rows
                      if w["mode"] == "writethrough" and w["contention_pct"] == "100")
            r["throughput_mb_s"], r["median_node_mb_s"] = str(100 * wt), str(0.8 * wt)
    write(path, list(rows[0]), rows)
    text = summary.summarize(run)
    fig7_text = text[text.index("## Fig. 7"):text.index("## Fig. 8")]
    assert "| dfuse / writethrough, by the median node |" in fig7_text
    assert "| 100% | 100.00x (+9900.0%) |" in fig7_text
    assert fig7_text.count("| 0.80x (-20.0%) |") == 1
    assert "by the median node" not in text[text.index("## Fig. 8"):]  # fig8.csv lacks it


def test_summary_without_dfuse_still_states_the_baselines_ratio(run: Path):
    # A stock-FUSE run (the host, a cluster without dfuse.ko): only the other two modes.
    for name in ("fig6", "fig7", "fig8", "fig9"):
        path = run / f"{name}.csv"
        lines = path.read_text().splitlines()
        path.write_text("\n".join([lines[0]] + [ln for ln in lines[1:]
                                                 if ",dfuse," not in ln]) + "\n")
    text = summary.summarize(run)
    headline = text[text.index("## Headline"):text.index("## Fig. 6")]
    assert "| throughput | n/a | 1.68x (+68.0%) | n/a | 0.56x (-44.4%) |" in headline
    fig7_text = text[text.index("## Fig. 7"):text.index("## Fig. 8")]
    assert "| 50% | n/a |" in fig7_text and "0.56x (-44.4%) |" in fig7_text


def test_repetitions_give_error_bars_and_ratio_ranges(run: Path):
    # Fig. 7 measured three times: dfuse 1.6x writethrough at the median, each mode's
    # repetitions 10% below and above it.
    fields = runner.FIO_FIELDS + runner.repetitions.spread_columns(runner.FIO_FIELDS)
    rows = []
    for m in MODES:
        for c in paper.CONTENTION_PCT:
            r = fio_row("fig7", m, "random", 50, c, 4)
            for f in ("throughput_mib_s", "throughput_mb_s", "lat_mean_ms"):
                r[f"{f}_min"], r[f"{f}_max"] = r[f] * 0.9, r[f] * 1.1
            rows.append({**r, "repeats": 3})
    write(run / "fig7.csv", fields, rows)
    text = summary.summarize(run)
    fig7_text = text[text.index("## Fig. 7"):text.index("## Fig. 8")]
    lo, hi = 1.6 * 0.9 / 1.1, 1.6 * 1.1 / 0.9
    assert f"| 0% | 1.60x (+60.0%) [{lo:.2f}-{hi:.2f}] |" in fig7_text
    assert "[" not in text[text.index("## Fig. 8"):]  # one repetition: no range

    import matplotlib.pyplot as plt
    import fig7
    captured = {}
    real_save = fig7.common.save
    fig7.common.save = lambda fig, out, name: captured.setdefault("fig", fig) and []
    try:
        fig7.draw(run, run / "figures")
    finally:
        fig7.common.save = real_save
    bars = [c for c in captured["fig"].axes[0].containers if hasattr(c, "patches")]
    assert len(bars) == len(MODES)
    assert all(b.errorbar is not None for b in bars)
    plt.close("all")


def test_compare_finds_the_points_where_two_runs_disagree(run: Path, tmp_path: Path):
    # A second run of the same results, except that dfuse at Fig. 7's 50% point is 20%
    # slower there: 1.6x writethrough becomes 1.28x, 1.25x apart.
    other = tmp_path / "again"
    other.mkdir()
    for name in ("fig6", "fig7", "fig8", "fig9"):
        rows = list(csv.DictReader(open(run / f"{name}.csv", newline="")))
        for r in rows:
            if name == "fig7" and r["mode"] == "dfuse" and r["contention_pct"] == "50":
                r["throughput_mb_s"] = str(float(r["throughput_mb_s"]) * 0.8)
        write(other / f"{name}.csv", list(rows[0].keys()), rows)
    script = [sys.executable, str(REPO / "plots" / "compare.py")]

    same = subprocess.run(script + [str(run), str(run)], capture_output=True, text=True)
    assert same.returncode == 0, same.stderr
    assert "| fig6 | random 0:100 | 1.60x | 1.60x | 1.00x | yes |" in same.stdout
    assert "| fig9 | netsfs 100% contention |" in same.stdout
    assert "24 of 24 points within 15 %." in same.stdout

    differ = subprocess.run(script + [str(run), str(other), "--out", str(tmp_path / "c.md")],
                            capture_output=True, text=True)
    assert differ.returncode == 1, differ.stderr
    assert "| fig7 | 50% contention | 1.60x | 1.28x | 1.25x | **no** |" in differ.stdout
    assert "23 of 24 points within 15 %." in differ.stdout
    assert (tmp_path / "c.md").read_text() == differ.stdout
    # A wider tolerance takes it; another pair and figures can be chosen.
    wide = subprocess.run(script + [str(run), str(other), "--tolerance", "0.3"],
                          capture_output=True, text=True)
    assert wide.returncode == 0
    pair = subprocess.run(script + [str(run), str(other), "--pair", "writethrough/weakwriteback",
                                    "--figures", "fig9"], capture_output=True, text=True)
    assert pair.returncode == 0 and "6 of 6 points within 15 %." in pair.stdout

    for bad, says in ((["--pair", "dfuse"], "expected MODE/BASE"),
                      (["--pair", "dfuse/nfs"], "unknown mode 'nfs'"),
                      (["--figures", "fig42"], "no point in common")):
        r = subprocess.run(script + [str(run), str(other)] + bad, capture_output=True, text=True)
        assert r.returncode == 2 and says in r.stderr and r.stderr.count("\n") == 1
    missing = subprocess.run(script + [str(run), str(tmp_path / "nothing")],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "is not a run directory" in missing.stderr


def test_compare_by_the_median_node(run: Path, tmp_path: Path):
    # Two runs of Fig. 7 whose sums disagree at 100 % (one dfuse node never waited in the
    # second) while their median nodes agree.
    script = [sys.executable, str(REPO / "plots" / "compare.py")]
    before = subprocess.run(script + [str(run), str(run), "--median-node"],
                            capture_output=True, text=True)
    assert before.returncode == 2 and "no point in common" in before.stderr  # no such column
    runs = []
    for name in ("a", "b"):
        d = tmp_path / name
        d.mkdir()
        rows = list(csv.DictReader(open(run / "fig7.csv", newline="")))
        for r in rows:
            r["median_node_mb_s"] = r["throughput_mb_s"]
            if name == "b" and r["mode"] == "dfuse" and r["contention_pct"] == "100":
                r["throughput_mb_s"] = str(float(r["throughput_mb_s"]) * 100)
        write(d / "fig7.csv", list(rows[0]), rows)
        runs.append(str(d))
    by_sum = subprocess.run(script + runs, capture_output=True, text=True)
    assert by_sum.returncode == 1 and "4 of 5 points within 15 %." in by_sum.stdout
    by_median = subprocess.run(script + runs + ["--median-node"], capture_output=True, text=True)
    assert by_median.returncode == 0, by_median.stdout
    assert "(median_node_mb_s)" in by_median.stdout
    assert "5 of 5 points within 15 %." in by_median.stdout
    both = subprocess.run(script + runs + ["--median-node", "--latency"],
                          capture_output=True, text=True)
    assert both.returncode == 2 and "not allowed with" in both.stderr
