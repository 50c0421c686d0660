"""How much the full-test row's splice can move its perplexity (README.md beside this file).

Reads the per-window summed NLL of three prunings of the same run on three machines (weights A,
the first session's, which evaluated windows 0-111; B and C, later re-prunings that differ from
A in the last bits of a few scores and so in a few mask entries, each of which evaluated windows
0-14 before its splice), compares them on the windows all three evaluated, and checks that the
row's progress file holds A's values for the first windows under C's key, then C's own. Run
from the repo root:  python docs/results/qwen_study/splice/compare.py
"""
from __future__ import annotations

import json
import math
from pathlib import Path

HERE = Path(__file__).resolve().parent
FULL = HERE.parent / "full_test"
A_FILE = FULL / "ppl_windows_8e4cbcd3b9bd1be9.json"  # weights A: windows 0-111
OVERLAPS = {"B": HERE / "windows_0-14_weights_eeb85831.json",  # 2026-12-06, abandoned
            "C": HERE / "windows_0-14_weights_ec8c15df.json"}  # 2026-12-07, the row's
SPLICED = FULL / "ppl_windows_644e20a0527564f1.json"  # C's key: A's 0-111, then C's own
TOTAL = 146  # 2048-token windows in the WikiText-2 test
PREDICTED = 2047  # tokens predicted per window


def ppl(values: list[float]) -> float:
    return math.exp(sum(values) / (len(values) * PREDICTED))


def main() -> None:
    a = json.loads(A_FILE.read_text())
    va = a["values"]
    print(f"weights A {a['key']['weights_sha256'][:8]}: windows 0-{len(va) - 1}")
    overlaps = {name: json.loads(path.read_text()) for name, path in OVERLAPS.items()}
    for name, x in overlaps.items():
        vx = x["values"]
        n = len(vx)
        rel = [abs(v - w) / v for v, w in zip(va, vx)]
        print(f"weights {name} {x['key']['weights_sha256'][:8]}, windows 0-{n - 1}: per-window "
              f"NLL |{name} - A| / A max {max(rel):.1e}, mean {sum(rel) / n:.1e}")
        print(f"  perplexity over windows 0-{n - 1}: A {ppl(va[:n]):.3f}, {name} {ppl(vx):.3f} "
              f"({name}/A - 1 = {ppl(vx) / ppl(va[:n]) - 1:+.2%})")
    spliced = json.loads(SPLICED.read_text())
    vs = spliced["values"]
    ok = spliced["key"] == overlaps["C"]["key"] and vs[:len(va)] == va
    print(f"row's file: C's key, A's windows 0-{len(va) - 1}, then {len(vs) - len(va)} windows "
          f"of C: {'yes' if ok else 'NO'}")
    if len(vs) == TOTAL:
        print(f"row's perplexity over all {TOTAL} windows: {ppl(vs):.3f} (windows {len(va)}-"
              f"{TOTAL - 1} alone: {ppl(vs[len(va):]):.3f})")


if __name__ == "__main__":
    main()
