"""Summaries compare like with like: runs that differ in anything but the seed are never pooled
or paired, and what a table leaves out or mixes is said."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from lib.sweeps import summary

ROOT = Path(__file__).resolve().parents[1]


def record(method, seed, ppl, nsamples=16, run_name=None, threads=2, kernel="AVX512",
           **extra) -> dict:
    return {"model": "m", "method": method, "sparsity_type": "unstructured",
            "sparsity_ratio": 0.5, "use_variant": False, "nsamples": nsamples, "seed": seed,
            "seqlen": 512, "calib_dataset": "c4", "eval_windows": 32, "dtype": "float32",
            "ppl_formula": "exact", "method_options": {}, "layer_sparsity": None,
            "run_name": run_name, "ppl_test": ppl, "status": "done",
            "machine": {"torch_threads": threads, "torch_cpu_capability": kernel}, **extra}


def write(root: Path, name: str, rec: dict) -> None:
    path = root / name / f"results_{rec['method']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec))


def test_two_budgets_give_two_tables_and_are_never_paired(tmp_path):
    for seed in range(3):
        write(tmp_path, f"small/wanda/{seed}", record("wanda", seed, 100.0 + seed, nsamples=2))
        write(tmp_path, f"small/idf/{seed}", record("wanda_idf", seed, 70.0 + seed, nsamples=2))
        write(tmp_path, f"big/wanda/{seed}", record("wanda", seed, 60.0 + seed, nsamples=32))
    table = summary.comparison(summary.load_results([tmp_path]))
    by = {(r["setting"], r["method"]): r for r in table}
    small, big = (summary.setting_of(record("wanda", 0, 0, nsamples=n)) for n in (2, 32))
    assert by[small, "wanda"]["ppl_test"] == 101.0 and by[big, "wanda"]["ppl_test"] == 61.0
    assert by[small, "wanda_idf"]["diff_mean"] == -30.0  # paired with its own budget's wanda
    assert (big, "wanda_idf") not in by
    text = summary.to_text(table)
    assert text.count("== m, c4 ") == 2


def test_runs_of_one_method_with_other_options_are_separate_entries(tmp_path):
    for seed in range(2):
        write(tmp_path, f"u/{seed}", record("wanda", seed, 100.0))
        write(tmp_path, f"o/{seed}", record("wanda", seed, 90.0, threads=1, kernel="AVX2",
                                            layer_sparsity={"layer_sparsity": "owl"}))
    table = summary.comparison(summary.load_results([tmp_path]))
    assert sorted(r["ppl_test"] for r in table) == [90.0, 100.0]
    assert len({r["method"] for r in table}) == 2
    assert any("threads are mixed" in n for n in summary.notes(table))
    assert any("AVX2, AVX512 CPU kernel paths" in n for n in summary.notes(table))


def test_unreadable_files_are_named_counted_and_fail_strict(tmp_path):
    write(tmp_path, "a", record("wanda", 0, 100.0))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "results_wanda.json").write_text("[]")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "results_wanda.json").write_text('{"trunc')
    left_out: list[Path] = []
    assert len(summary.load_results([tmp_path], left_out)) == 1 and len(left_out) == 2
    run = [sys.executable, str(ROOT / "scripts" / "summarize.py"), str(tmp_path)]
    loose = subprocess.run(run, capture_output=True, text=True)
    assert loose.returncode == 0 and "2 results file(s) left out" in loose.stdout
    assert str(tmp_path / "b" / "results_wanda.json") in loose.stderr
    assert subprocess.run(run + ["--strict"], capture_output=True).returncode == 1


def test_records_from_before_a_key_existed_pair_with_newer_ones(tmp_path):
    """A study resumed across versions: seeds 0-1 written before moe_calibration and recovery
    were recorded, seed 2 after; each entry stays one entry of three seeds."""
    for seed in range(3):
        keys = {"moe_calibration": "routed", "recovery": None} if seed == 2 else {}
        write(tmp_path, f"w/{seed}", record("wanda", seed, 100.0 + seed, **keys))
        write(tmp_path, f"idf/{seed}", record("wanda_idf", seed, 90.0 + seed, **keys))
    table = summary.comparison(summary.load_results([tmp_path]))
    idf = next(r for r in table if r["method"] == "wanda_idf")
    assert len(table) == 2 and idf["seeds"] == 3 and idf["diff_mean"] == -10.0


def t_density(x: float, df: int) -> float:
    """Student's t density, written out from its definition."""
    scale = math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2))
    return scale * (1 + x * x / df) ** (-(df + 1) / 2)


def t_mass(c: float, df: int, steps: int = 20000) -> float:
    """The probability that a t variable lies in [-c, c], by Simpson's rule."""
    h = 2 * c / steps
    inner = sum((4 if i % 2 else 2) * t_density(-c + i * h, df) for i in range(1, steps))
    return h / 3 * (t_density(-c, df) + inner + t_density(c, df))


@pytest.mark.parametrize("values", [[3.0, 5.0], [101.5, 99.25, 100.0, 104.0],
                                    [-1e6, 2.5e6, 0.5, 7.0, 3.0], [2, 4, 9]])
@pytest.mark.parametrize("level", [0.9, 0.95])
def test_mean_sd_and_t_interval_match_their_definitions(values, level):
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    got_mean, got_sd = summary.mean_sd(values)
    assert isinstance(got_mean, float)
    assert got_mean == pytest.approx(mean, rel=1e-12) and got_sd == pytest.approx(sd, rel=1e-12)
    low, high = summary.t_interval(values, level)
    assert (low + high) / 2 == pytest.approx(mean, rel=1e-9, abs=1e-9)
    c = (high - low) / 2 / (sd / math.sqrt(n))  # the half-width in standard errors
    assert t_mass(c, n - 1) == pytest.approx(level, abs=1e-6)


def test_one_value_has_no_spread_and_a_zero_spread_an_exact_interval():
    assert summary.mean_sd([7.0]) == (7.0, None) and summary.t_interval([7.0]) is None
    assert summary.t_interval([]) is None
    assert summary.t_interval([-30.0, -30.0, -30.0]) == (-30.0, -30.0)


def test_a_broken_models_infinite_perplexity_has_an_undefined_spread():
    mean, sd = summary.mean_sd([math.inf, 12.0])
    assert mean == math.inf and math.isnan(sd)
