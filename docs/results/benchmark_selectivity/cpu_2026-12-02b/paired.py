"""Paired ratios (each run over the same repeat's wanda: median [range]) from the benchmark's
printed repeat lines, for files written before the benchmark printed them itself; with --pool,
over the repeats of all the files together (readings of one budget).

  python docs/results/benchmark_selectivity/cpu_2026-12-02b/paired.py [--pool] FILE..."""
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "scripts"))
from benchmark_selectivity import paired_ratios  # noqa: E402

LINE = re.compile(r"^repeat (\d+) (\S+)\s+([\d.]+) s")
pool = "--pool" in sys.argv
paths = [a for a in sys.argv[1:] if a != "--pool"]
groups = [paths] if pool else [[p] for p in paths]
for group in groups:
    path = " + ".join(group)
    times: dict[str, list[float]] = {}
    for line in "\n".join(Path(p).read_text() for p in group).splitlines():
        if m := LINE.match(line):
            times.setdefault(m[2], []).append(float(m[3]))
    if "wanda" not in times:
        print(f"{path}: no wanda runs")
        continue
    print(path)
    for name, (median, low, high) in paired_ratios(times).items():
        print(f"  {name:14s} {median:.3f} [{low:.3f}, {high:.3f}]")
