"""Summaries compare like with like: runs that differ in anything but the seed are never pooled
or paired, and what a table leaves out or mixes is said."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
