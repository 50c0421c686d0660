"""The benchmark's paired ratios, against ratios computed repeat by repeat."""
from __future__ import annotations

import contextlib
import json
import random
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from benchmark_selectivity import keep_originals, paired_ratios  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


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


def test_the_json_holds_every_job_of_every_repeat(tiny_llama_dir, data_dir, tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "benchmark_selectivity.py"), "--model",
         str(tiny_llama_dir), "--data_dir", str(data_dir), "--nsamples", "2", "--seqlen", "32",
         "--repeats", "2", "--methods", "magnitude,sparsegpt", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    record = json.loads(out.read_text())
    runs = record["runs"]
    assert list(runs) == ["floor", "wanda", "magnitude", "sparsegpt"]
    printed = [line.split() for line in done.stdout.splitlines() if line.startswith("repeat ")]
    for name, row in runs.items():  # the file against the per-repeat lines printed
        seconds = [float(words[3]) for words in printed if words[2] == name]
        assert [round(s, 2) for s in row["seconds"]] == seconds
        assert row["best_seconds"] == min(row["seconds"])
        ratios = [s / w for s, w in zip(row["seconds"], runs["wanda"]["seconds"])]
        assert row["paired_time_over_wanda"] == pytest.approx(
            [statistics.median(ratios), min(ratios), max(ratios)])
    assert record["nsamples"] == 2 and record["machine"]["cpu_cores"] >= 1


def test_an_unknown_method_is_one_line(tiny_llama_dir):
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "benchmark_selectivity.py"),
                           "--model", str(tiny_llama_dir), "--methods", "wanda_idff"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith(
        "benchmark_selectivity.py: error: --methods: wanda_idff is not a method")
