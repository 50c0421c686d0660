"""The benchmark's paired ratios, against ratios computed repeat by repeat."""
from __future__ import annotations

import contextlib
import random
import statistics
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from benchmark_selectivity import keep_originals, paired_ratios  # noqa: E402


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


@pytest.mark.parametrize("where", ["memory", "disk"])
def test_originals_restore_the_exact_dense_weights(where, monkeypatch, tmp_path):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 10))
    model[1].weight = model[0].weight  # tied, as in many decoders
    dense = {k: v.clone() for k, v in model.state_dict().items()}
    with contextlib.ExitStack() as stack:
        restore = keep_originals(model, where, stack)
        for _ in range(2):  # pruned and put back, twice
            with torch.no_grad():
                for p in model.parameters():
                    p.mul_(torch.rand_like(p) > 0.5)
            restore()
            for k, v in model.state_dict().items():
                assert torch.equal(v, dense[k]), k
        assert model[1].weight is model[0].weight
    assert list(tmp_path.iterdir()) == []  # the disk copy's folder went with the script
