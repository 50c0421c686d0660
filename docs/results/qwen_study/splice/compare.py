"""How much the full-test row's splice can move its perplexity (README.md beside this file).

Reads the per-window summed NLL of two prunings of the same run (weights A, the first session's;
weights B, a later machine's re-pruning, which differs from A in the last bits of a few
scores and so in a few mask entries), over the windows both evaluated, and checks that the
spliced progress file holds A's values for the first windows under B's key. Run from the repo
root:  python docs/results/qwen_study/splice/compare.py
"""
from __future__ import annotations

import json
import math
from pathlib import Path

HERE = Path(__file__).resolve().parent
FULL = HERE.parent / "full_test"
A_FILE = FULL / "ppl_windows_8e4cbcd3b9bd1be9.json"  # weights A: windows 0-111
B_OVERLAP = HERE / "windows_0-14_weights_eeb85831.json"  # weights B: windows 0-14
SPLICED = FULL / "ppl_windows_3cae589c4b43db4d.json"  # B's key: A's 0-111, then B's own
PREDICTED = 2047  # tokens predicted per 2048-token window


def ppl(values: list[float]) -> float:
    return math.exp(sum(values) / (len(values) * PREDICTED))


def main() -> None:
    a, b = json.loads(A_FILE.read_text()), json.loads(B_OVERLAP.read_text())
    va, vb = a["values"], b["values"]
    n = len(vb)
    rel = [abs(x - y) / x for x, y in zip(va, vb)]
    print(f"weights A {a['key']['weights_sha256'][:8]}: {len(va)} windows; "
          f"weights B {b['key']['weights_sha256'][:8]}: {n} windows (0-{n - 1})")
    print(f"per-window NLL, |A - B| / A over windows 0-{n - 1}: "
          f"max {max(rel):.1e}, mean {sum(rel) / n:.1e}")
    pa, pb = ppl(va[:n]), ppl(vb)
    print(f"perplexity over windows 0-{n - 1}: A {pa:.3f}, B {pb:.3f} "
          f"(B/A - 1 = {pb / pa - 1:+.2%})")
    spliced = json.loads(SPLICED.read_text())
    ok = spliced["key"] == b["key"] and spliced["values"][:len(va)] == va
    print(f"spliced file: B's key, A's windows 0-{len(va) - 1}, then "
          f"{len(spliced['values']) - len(va)} windows of B: {'yes' if ok else 'NO'}")


if __name__ == "__main__":
    main()
