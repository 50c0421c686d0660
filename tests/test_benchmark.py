"""The benchmark's paired ratios, against ratios computed repeat by repeat."""
from __future__ import annotations

import random
import statistics
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from benchmark_selectivity import paired_ratios  # noqa: E402


@pytest.mark.parametrize("repeats", [1, 2, 3, 4, 7])
def test_paired_ratios_match_per_repeat_ratios(repeats):
    rng = random.Random(repeats)
    times = {name: [rng.uniform(30, 60) for _ in range(repeats)]
             for name in ("floor", "wanda", "wanda_select")}
    got = paired_ratios(times)
    for name, seconds in times.items():
        ratios = [seconds[r] / times["wanda"][r] for r in range(repeats)]
        assert got[name] == pytest.approx((statistics.median(ratios), min(ratios), max(ratios)))
    assert got["wanda"] == (1.0, 1.0, 1.0)


def test_paired_ratios_cancel_a_slow_repeat():
    # a repeat that runs everything 1.5x slower leaves the paired ratio where it was
    times = {"wanda": [40.0, 60.0], "wanda_select": [44.0, 66.0]}
    assert paired_ratios(times)["wanda_select"] == pytest.approx((1.1, 1.1, 1.1))
